package interop

import (
	"context"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"dubbo.apache.org/dubbo-go/v3/client"
	"dubbo.apache.org/dubbo-go/v3/common"
	"dubbo.apache.org/dubbo-go/v3/common/constant"
	tri "dubbo.apache.org/dubbo-go/v3/protocol/triple/triple_protocol"
)

// The Triple flavour of the Greeter is an IDL-mode (protobuf) service, written
// by hand in the shape protoc-gen-go-triple generates, with the well-known
// google.protobuf.StringValue as request and reply (no .proto to compile):
//
//	service Greeter {
//	  rpc SayHello(google.protobuf.StringValue) returns (google.protobuf.StringValue);
//	  rpc Fail(google.protobuf.StringValue) returns (google.protobuf.StringValue);
//	}
//
// On the wire it is plain gRPC: POST /com.weftmesh.interop.Greeter/SayHello,
// content-type application/grpc+proto, one length-prefixed StringValue each
// way, so a grpc-go client or server with the same messages interoperates.

// Triple-only coordinates.
const (
	// ProviderIDKey is the response attachment (header) naming the provider
	// instance (its -id flag) that answered.
	ProviderIDKey = "x-provider-id"
	// SayHelloProcedure / FailProcedure are the gRPC paths of the methods.
	SayHelloProcedure = "/" + Interface + "/SayHello"
	FailProcedure     = "/" + Interface + "/Fail"
)

// GreeterHandler is the Triple Greeter's server side.
type GreeterHandler interface {
	SayHello(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
	Fail(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
}

func unary(name string, call func(h GreeterHandler, ctx context.Context, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error)) common.MethodInfo {
	return common.MethodInfo{
		Name:        name,
		Type:        constant.CallUnary,
		ReqInitFunc: func() any { return new(wrapperspb.StringValue) },
		MethodFunc: func(ctx context.Context, args []any, handler any) (any, error) {
			res, err := call(handler.(GreeterHandler), ctx, args[0].(*wrapperspb.StringValue))
			if err != nil {
				return nil, err
			}
			return tri.NewResponse(res), nil
		},
	}
}

// GreeterServiceInfo registers a GreeterHandler with server.Server.Register.
var GreeterServiceInfo = common.ServiceInfo{
	InterfaceName: Interface,
	ServiceType:   (*GreeterHandler)(nil),
	Methods: []common.MethodInfo{
		unary("SayHello", GreeterHandler.SayHello),
		unary("Fail", GreeterHandler.Fail),
	},
}

// GreeterClientInfo is passed to client.Client.DialWithInfo, which makes
// dubbo-go use its IDL-mode Triple invoker (protobuf codec).
var GreeterClientInfo = client.ClientInfo{
	InterfaceName:        Interface,
	MethodNames:          []string{"SayHello", "Fail"},
	ConnectionInjectFunc: func(any, *client.Connection) {},
}
