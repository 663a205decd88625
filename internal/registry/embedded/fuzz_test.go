package embedded

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/fuzzcrash"
)

// FuzzServer: request bodies, paths and queries from a confused or hostile
// client never panic the registry server and always get a status from its
// documented set.
func FuzzServer(f *testing.F) {
	fuzzcrash.Capture()
	f.Add("PUT", "com.foo.Echo", []byte(`{"service":"com.foo.Echo","address":"127.0.0.1:1","protocol":"dubbo","metadata":{"v":"1"}}`), "")
	f.Add("PUT", "com.foo.Echo", []byte(`{"address":"nowhere"}`), "")
	f.Add("GET", "com.foo.Echo", []byte(nil), "index=3&wait=0s")
	f.Add("GET", "com.foo.Echo", []byte(nil), "index=x&wait=-1")
	f.Add("DELETE", "com.foo.Echo", []byte(nil), "")
	f.Add("PUT", "../..", []byte(`[1,2,3]`), "session=nope")
	srv := NewServer(ServerOptions{SessionTTL: time.Minute})
	defer srv.Close()
	h := srv.Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/sessions", nil))
	var sess struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &sess); err != nil || sess.ID == "" {
		f.Fatalf("creating a session: %d %s", rec.Code, rec.Body.String())
	}
	allowed := map[int]bool{200: true, 201: true, 204: true, 400: true, 404: true, 405: true, 409: true, 413: true, 507: true}
	f.Fuzz(func(t *testing.T, method, service string, body []byte, query string) {
		switch method {
		case "GET", "PUT", "DELETE", "POST":
		default:
			return
		}
		path := "/v1/services/" + url.PathEscape(service)
		if method != "GET" {
			path += "/instances"
		}
		if method == "DELETE" {
			path += "/" + url.PathEscape(string(body))
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		q.Set("wait", "0s") // a long poll must never block the fuzzer (the default wait is 30s)
		req := httptest.NewRequest(method, path+"?"+q.Encode(), bytes.NewReader(body))
		req.Header.Set("X-Weft-Session", sess.ID)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !allowed[rec.Code] {
			t.Fatalf("%s %s: status %d %s", method, path, rec.Code, rec.Body.String())
		}
		if rec.Code >= 400 && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: error body is not JSON: %q", method, path, rec.Body.String())
		}
	})
}
