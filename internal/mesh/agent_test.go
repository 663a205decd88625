package mesh

import (
	"net"
	"strings"
	"testing"
)

// TestNewFailsCleanly: a taken listener port fails New with the address in
// the error and leaves nothing bound (a sidecar that fails to start must
// not hold its ports).
func TestNewFailsCleanly(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ingress := free.Addr().String()
	_ = free.Close()
	cfg, err := ParseJSON([]byte(`{"registry": {"address": "127.0.0.1:1"}, "sdk_address": "127.0.0.1:0",
		"ingress": {"bolt": "` + ingress + `"}, "egress": {"bolt": "` + taken.Addr().String() + `"}}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(cfg, Options{})
	if err == nil || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Fatalf("New with a taken egress port: %v", err)
	}
	ln, err := net.Listen("tcp", ingress)
	if err != nil {
		t.Fatalf("the ingress port stayed bound after a failed New: %v", err)
	}
	_ = ln.Close()
}
