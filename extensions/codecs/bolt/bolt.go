// Package bolt registers the SOFARPC Bolt codec (internal/codec/bolt) as
// "bolt" for the RPC proxy.
package bolt

import (
	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/codec/bolt"
)

func init() {
	api.Codecs.Register(bolt.Name, nil, func(l api.CodecLimits) api.Codec {
		return &bolt.Codec{Limits: bolt.Limits{
			MaxContent:       l.MaxFrameBytes,
			MaxHeader:        l.MaxHeaderBytes,
			MaxHeaderEntries: l.MaxHeaders,
		}}
	})
}
