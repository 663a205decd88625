package api

// HeaderMap is the header block of a request or response in a
// protocol-agnostic form. Keys are compared case-insensitively. Request
// pseudo-headers follow HTTP/2 and Envoy: ":method", ":path", ":authority",
// ":scheme"; responses carry ":status". RPC codecs map their routing fields
// onto the same keys (the service is ":authority", the method ":path").
type HeaderMap interface {
	// Get returns the first value of key.
	Get(key string) (string, bool)
	// Set replaces every value of key with value.
	Set(key, value string)
	// Add appends a value for key.
	Add(key, value string)
	// Del removes every value of key.
	Del(key string)
	// Range calls fn for each header in order until fn returns false.
	// Pseudo-headers are not included.
	Range(fn func(key, value string) bool)
}
