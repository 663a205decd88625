// Package sdk is the Go client of the Weft sidecar's local API (docs/mesh.md):
// an application publishes its services through its sidecar and asks it
// where to call the services it needs. It uses only the standard library
// and speaks plain JSON over HTTP, which is all an SDK in another language
// needs to do too.
package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
)

// DefaultAddress is where a sidecar's SDK API listens unless configured;
// the environment variable WEFT_SDK_ADDR overrides it.
const DefaultAddress = "127.0.0.1:13330"

// Client talks to one sidecar.
type Client struct {
	base string
	hc   *http.Client
}

// New returns a client of the sidecar at addr ("" for WEFT_SDK_ADDR or
// DefaultAddress).
func New(addr string) *Client {
	if addr == "" {
		addr = os.Getenv("WEFT_SDK_ADDR")
	}
	if addr == "" {
		addr = DefaultAddress
	}
	return &Client{base: "http://" + addr, hc: &http.Client{Timeout: 90 * time.Second}}
}

// Instance is one provider as the registry holds it.
type Instance struct {
	Service  string            `json:"service"`
	Address  string            `json:"address"`
	Protocol string            `json:"protocol"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Publication asks the sidecar to publish a local service.
type Publication struct {
	Service  string            `json:"service"`
	Protocol string            `json:"protocol"` // "bolt", "dubbo"
	Port     int               `json:"port"`     // the application's port on 127.0.0.1
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Published is the sidecar's answer: what it registered (its own ingress
// address, not the application's port) and whether the registry has it
// yet (false while the registry is unreachable; the sidecar registers it
// when the registry is back).
type Published struct {
	Publication
	Instance   Instance `json:"instance"`
	Registered bool     `json:"registered"`
}

// Subscription is a service the application calls through its sidecar.
type Subscription struct {
	Service  string `json:"service"`
	Protocol string `json:"protocol"`
	// Address is the sidecar's local address to call ("127.0.0.1:port").
	Address string `json:"address"`
	// Known is false until the registry has answered once.
	Known     bool       `json:"known"`
	Revision  uint64     `json:"revision"`
	Instances []Instance `json:"instances"`
}

// Error is an error answer of the sidecar.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("weft sidecar: %d: %s", e.Status, e.Message) }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("content-type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return &Error{Status: resp.StatusCode, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}

// Publish publishes a local service. The sidecar checks that something
// listens on the port first (422 otherwise).
func (c *Client) Publish(ctx context.Context, p Publication) (*Published, error) {
	var out Published
	if err := c.do(ctx, http.MethodPost, "/v1/publish", p, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Unpublish deregisters a service; it returns once consumers have had the
// drain grace to stop sending to it.
func (c *Client) Unpublish(ctx context.Context, service, protocol string) error {
	return c.do(ctx, http.MethodPost, "/v1/unpublish", map[string]string{"service": service, "protocol": protocol}, nil)
}

// Subscribe asks the sidecar to follow a service and returns where to
// call it.
func (c *Client) Subscribe(ctx context.Context, service, protocol string) (*Subscription, error) {
	var out Subscription
	if err := c.do(ctx, http.MethodPost, "/v1/subscribe", map[string]string{"service": service, "protocol": protocol}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Watch long-polls a subscription (made with Subscribe, renewed if the
// sidecar forgot it) and calls fn with every new revision until ctx ends.
// Errors (the sidecar restarting) are retried.
func (c *Client) Watch(ctx context.Context, service, protocol string, fn func(*Subscription)) error {
	var index uint64
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		q := url.Values{"service": {service}, "protocol": {protocol}, "index": {strconv.FormatUint(index, 10)}, "wait": {"30s"}}
		var s Subscription
		if err := c.do(ctx, http.MethodGet, "/v1/subscriptions?"+q.Encode(), nil, &s); err != nil {
			if e, ok := err.(*Error); ok && e.Status == http.StatusNotFound {
				// A restarted sidecar forgot the subscription: renew it.
				if _, err := c.Subscribe(ctx, service, protocol); err == nil {
					continue
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if s.Revision != index {
			index = s.Revision
			fn(&s)
		}
	}
	return ctx.Err()
}
