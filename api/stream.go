package api

import (
	"context"
	"net"
	"time"
)

// Status tells a filter chain whether to go on.
type Status int

const (
	// Continue passes the stream to the next filter.
	Continue Status = iota
	// Stop ends the chain; the filter has sent a local reply.
	Stop
)

// Response flags recorded in access logs (Envoy's short names).
const (
	FlagNoHealthyUpstream      = "UH"
	FlagUpstreamConnectFailure = "UF"
	FlagUpstreamOverflow       = "UO"
	FlagNoRoute                = "NR"
	FlagNoClusterFound         = "NC"
	FlagUpstreamRequestTimeout = "UT"
	FlagUpstreamReset          = "UR"
	FlagDownstreamReset        = "DC"
	FlagFaultDelay             = "DI"
	FlagFaultAbort             = "FI"
	FlagRetryOverflow          = "URX"
	FlagDownstreamProtocol     = "DPE"
	FlagUpstreamProtocol       = "UPE"
	FlagStreamIdleTimeout      = "SI"
	FlagRequestHeaderTimeout   = "RHT"
)

// Stream is what a stream filter sees of one request/response exchange. It
// is owned by one goroutine at a time; filters must not keep it after the
// call returns.
type Stream interface {
	// Context is cancelled when the downstream goes away or the stream ends.
	Context() context.Context
	// Protocol names the downstream codec ("http1", "bolt", ...).
	Protocol() string
	// RequestHeaders are the downstream request headers (mutable).
	RequestHeaders() HeaderMap
	// ResponseHeaders are the response headers, nil before a response exists.
	ResponseHeaders() HeaderMap
	// SendLocalReply answers the downstream without an upstream. status is
	// an HTTP status; RPC codecs translate it to their own codes.
	SendLocalReply(status int, body string, flag string)
	// SetFlag records a response flag for the access log.
	SetFlag(flag string)
	// RemoteAddr is the downstream peer address.
	RemoteAddr() net.Addr
	// StartTime is when the request's first byte was read.
	StartTime() time.Time
}

// StreamFilter runs on every L7 stream whatever its protocol. One built
// filter serves all streams of a listener concurrently, so it must keep
// per-stream state in locals only; that is what makes Run allocation-free.
type StreamFilter interface {
	// OnRequest runs after the request headers are read, before routing.
	OnRequest(s Stream) Status
	// OnResponse runs when response headers (upstream or local) are ready.
	OnResponse(s Stream) Status
}

// StreamFilterFactory turns a typed filter config into a StreamFilter:
// Parse validates (pure), Build runs once at config time.
type StreamFilterFactory interface {
	// Parse decodes and validates the typed config. cfg is nil when the
	// filter has no typed_config.
	Parse(cfg []byte, typeURL string) (any, error)
	// Build makes the filter from what Parse returned; bc gives shared
	// services (metrics) of the listener being built.
	Build(parsed any, bc BuildContext) (StreamFilter, error)
}

// StreamFilters is the registry of stream (HTTP) filters, keyed by name
// (e.g. "envoy.filters.http.fault") and by typed_config type URL.
var StreamFilters = NewRegistry[StreamFilterFactory]("stream filter")
