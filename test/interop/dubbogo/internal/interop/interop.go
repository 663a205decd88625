// Package interop holds what the dubbo-go interop provider and consumer share:
// the service coordinates and a quiet logger setup.
package interop

import (
	"os"
	"strings"

	getty "github.com/apache/dubbo-getty"
	gostlogger "github.com/dubbogo/gost/log/logger"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	dubbologger "dubbo.apache.org/dubbo-go/v3/logger"
)

// Service coordinates served by the provider and called by the consumer.
const (
	Interface = "com.weftmesh.interop.Greeter"
	Version   = "1.0.0"
	Group     = "g1"

	// ProviderKey / ProviderValue is the attachment the provider adds to every reply.
	ProviderKey   = "x-provider"
	ProviderValue = "dubbo-go"
	// EchoPrefix: request attachments whose key has this prefix are echoed back.
	EchoPrefix = "x-"
)

// QuietLogs routes dubbo-go, gost and getty logging to stderr at the given
// level (for example "warn" or "error"); the default would print info lines to stdout.
func QuietLogs(level string) {
	lvl, err := zapcore.ParseLevel(strings.ToLower(level))
	if err != nil {
		lvl = zapcore.WarnLevel
	}
	atom := zap.NewAtomicLevelAt(lvl)
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(os.Stderr), atom)
	l := &gostlogger.DubboLogger{
		Logger:       zap.New(core, zap.AddCaller(), zap.AddCallerSkip(1)).Sugar(),
		DynamicLevel: atom,
	}
	gostlogger.SetLogger(l)
	dubbologger.SetLogger(l)
	getty.SetLogger(l)
}
