// Package smoketest holds a test that builds the interop provider and
// consumer, runs them against each other and checks the consumer's report.
package smoketest
