// Package api holds the interfaces every Weft extension implements and the
// typed registries they register into. It imports nothing from internal/ or
// extensions/: arrows point one way, api <- internal <- extensions <- cmd.
package api
