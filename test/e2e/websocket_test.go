package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// wsEchoUpstream is a WebSocket server that echoes every message back
// prefixed with "echo:".
func wsEchoUpstream(t *testing.T) *testUpstream {
	return newUpstream(t, "ws", websocket.Handler(func(ws *websocket.Conn) {
		for {
			var msg string
			if err := websocket.Message.Receive(ws, &msg); err != nil {
				return
			}
			if err := websocket.Message.Send(ws, "echo:"+msg); err != nil {
				return
			}
		}
	}))
}

// TestWebSocketPassThrough upgrades through weft and echoes messages both
// ways, text and binary, including one larger than a socket buffer.
func TestWebSocketPassThrough(t *testing.T) {
	t.Parallel()
	up := wsEchoUpstream(t)
	w, _ := startHTTPProxy(t, hcmConfig{Routes: routeTo("ws"), Extra: `upgrade_configs: [{upgrade_type: websocket}]`},
		staticCluster("ws", up.Port))
	addr := w.Listener("http")

	cfg, err := websocket.NewConfig("ws://"+addr+"/chat", "http://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dialer = nil
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatalf("dial through weft: %v", err)
	}
	defer ws.Close()
	_ = ws.SetDeadline(time.Now().Add(10 * time.Second))

	msgs := []string{"hello", "", "second message", strings.Repeat("x", 300<<10)}
	for i := 0; i < 20; i++ {
		msgs = append(msgs, fmt.Sprintf("msg-%d", i))
	}
	// Send all first, then read all: the tunnel must carry both
	// directions at once.
	done := make(chan error, 1)
	go func() {
		for _, m := range msgs {
			if err := websocket.Message.Send(ws, m); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i, m := range msgs {
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil {
			t.Fatalf("receive %d: %v", i, err)
		}
		if got != "echo:"+m {
			t.Fatalf("message %d: got %d bytes %.40q, want %d bytes %.40q", i, len(got), got, len(m)+5, "echo:"+m)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("send: %v", err)
	}
	// Binary frames too.
	bin := []byte{0, 1, 2, 255, 254}
	if err := websocket.Message.Send(ws, bin); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := websocket.Message.Receive(ws, &got); err != nil || got != "echo:"+string(bin) {
		t.Fatalf("binary echo: %q %v", got, err)
	}
	// Closing the client ends the upstream side.
	ws.Close()
	waitFor(t, 5*time.Second, "the tunnel to close", func() bool {
		return w.metricValue("weft_cluster_upstream_cx_active", "cluster=ws") == 0
	})
}

// TestWebSocketRefusedWithoutUpgradeConfig checks an Upgrade request is
// answered 403 by weft and never reaches the upstream when the connection
// manager has no upgrade_configs.
func TestWebSocketRefusedWithoutUpgradeConfig(t *testing.T) {
	t.Parallel()
	up := wsEchoUpstream(t)
	w, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("ws")}, staticCluster("ws", up.Port))
	addr := w.Listener("http")

	_, code := curlCode(t, "-o", "/dev/null",
		"-H", "Connection: Upgrade", "-H", "Upgrade: websocket",
		"-H", "Sec-WebSocket-Version: 13", "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
		base+"/chat")
	if code != 403 {
		t.Errorf("upgrade without upgrade_configs: status %d, want 403", code)
	}
	cfg, _ := websocket.NewConfig("ws://"+addr+"/chat", "http://"+addr)
	if ws, err := websocket.DialConfig(cfg); err == nil {
		ws.Close()
		t.Errorf("websocket dial succeeded without upgrade_configs")
	}
	if up.Hits() != 0 {
		t.Errorf("upstream saw %d upgrade requests, want 0", up.Hits())
	}
	// Plain requests on the same route still work.
	r := get(t, client(), base+"/plain")
	if r.Status == 403 {
		t.Errorf("a plain request got 403")
	}
}
