// Package rpcpeer is a small RPC client and server for SOFARPC Bolt (v1 and
// v2) and Dubbo 2 (hessian2), used by the end-to-end tests and the load
// benchmark to talk to the Weft proxy over loopback TCP.
//
// It is written from the wire descriptions in PROTOCOLS.md and deliberately
// shares no code with Weft's own codecs (internal/codec/bolt and
// internal/codec/dubbo), nor imports anything under internal/ or api/: it is
// an independent second implementation, so that a test passing through the
// proxy checks Weft's codecs against something other than themselves.
// Dubbo bodies are read and written with github.com/apache/dubbo-go-hessian2;
// everything else is the standard library.
//
// The Client pipelines any number of concurrent calls on one connection: one
// reader goroutine per connection, no goroutine per request, and one batching
// writer (frames are appended to a pending buffer under a mutex; whichever
// caller finds no write in progress becomes the flusher and writes until the
// buffer is empty). The Server echoes requests back (body, headers or
// attachments, plus "x-served-by"), with optional delays, a "busy" method, a
// stall switch and abrupt connection kills for failure tests.
//
// Besides Client and Server, the package exposes its frame codecs
// (EncodeRequest, EncodeResponse, DecodeResponse, ReadResponse, BoltFrame,
// DubboFrame, ParseDubboRequest, ParseDubboResponse) for tests that write
// raw or deliberately broken bytes.
package rpcpeer
