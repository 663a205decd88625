// Package dubbo registers the Dubbo 2 codec (internal/codec/dubbo) as
// "dubbo" for the RPC proxy.
package dubbo

import (
	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/codec/dubbo"
)

func init() {
	api.Codecs.Register(dubbo.Name, nil, func(l api.CodecLimits) api.Codec {
		return dubbo.Codec{Limits: dubbo.Limits{
			MaxBody:        l.MaxFrameBytes,
			MaxAttachments: l.MaxHeaders,
		}}
	})
}
