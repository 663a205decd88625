// Package echo is the gRPC service shared by the bench/h2 backend and load
// client: one unary method, /weft.bench.Echo/Echo, that answers with the
// request's bytes. Messages are raw bytes (a pass-through codec registered
// under the name "proto", so the wire content-type stays application/grpc and
// nothing is (un)marshalled): proxies see ordinary gRPC frames, and neither
// side spends load-generator CPU on protobuf.
package echo

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
)

// Method is the full method name the client calls.
const Method = "/weft.bench.Echo/Echo"

// Codec passes *[]byte messages through unchanged.
type Codec struct{}

// Marshal returns the bytes *v points to.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("echo codec: marshal %T, want *[]byte", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
}

// Unmarshal copies the message into *v.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("echo codec: unmarshal into %T, want *[]byte", v)
	}
	*b = data.Materialize()
	return nil
}

// Name is "proto" so the content-subtype on the wire is the usual one.
func (Codec) Name() string { return "proto" }

func echoHandler(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	var in []byte
	if err := dec(&in); err != nil {
		return nil, err
	}
	return &in, nil
}

// ServiceDesc describes the echo service for grpc.Server.RegisterService.
var ServiceDesc = grpc.ServiceDesc{
	ServiceName: "weft.bench.Echo",
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Echo", Handler: echoHandler}},
	Metadata:    "bench/h2/internal/echo",
}
