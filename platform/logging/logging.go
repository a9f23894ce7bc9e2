// Package logging builds the slog loggers every service uses. Proto messages logged as
// attribute values are redacted through their privacy classification: a field classified
// as member data (user.*) is replaced by its category, so a log line can say that an
// email was present without saying what it was. A line logged with a context that
// carries an OpenTelemetry span names its trace_id and span_id.
package logging

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"lethe.dev/platform/classify"
)

// New returns a logger writing to w: JSON when json is true, text otherwise. Every
// proto.Message attribute value is redacted.
func New(w io.Writer, level slog.Level, json bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if json {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(RedactingHandler{h})
}

// ParseLevel maps "debug", "info", "warn", "error" to a level (info when unknown).
func ParseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return slog.LevelInfo
	}
	return l
}

// RedactingHandler wraps a handler and redacts proto.Message attribute values.
type RedactingHandler struct{ slog.Handler }

// Handle implements slog.Handler.
func (h RedactingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	// Every line logged under a span names its trace, so logs and traces join up.
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		out.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, out)
}

// WithAttrs implements slog.Handler.
func (h RedactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		red[i] = redactAttr(a)
	}
	return RedactingHandler{h.Handler.WithAttrs(red)}
}

// WithGroup implements slog.Handler.
func (h RedactingHandler) WithGroup(name string) slog.Handler {
	return RedactingHandler{h.Handler.WithGroup(name)}
}

func redactAttr(a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindAny {
		if m, ok := a.Value.Any().(proto.Message); ok {
			return slog.Attr{Key: a.Key, Value: Redacted(m)}
		}
	}
	return a
}

// Redacted renders a message as a group of its set fields, with every field classified
// as member data replaced by "[redacted <category>]". Unclassified fields are redacted
// too: a field nobody classified is treated as personal.
func Redacted(m proto.Message) slog.Value {
	if m == nil {
		return slog.StringValue("<nil>")
	}
	return redactMessage(m.ProtoReflect())
}

func redactMessage(m protoreflect.Message) slog.Value {
	var attrs []slog.Attr
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		key := string(fd.Name())
		c := classify.Of(fd)
		isMsg := fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap()
		switch {
		case isMsg && strings.HasPrefix(string(fd.Message().FullName()), "lethe."):
			attrs = append(attrs, slog.Attr{Key: key, Value: redactMessage(v.Message())})
		case c == nil:
			attrs = append(attrs, slog.String(key, "[redacted unclassified]"))
		case classify.IsMemberData(fd):
			attrs = append(attrs, slog.String(key, "[redacted "+c.GetCategory()+"]"))
		case fd.IsList():
			attrs = append(attrs, slog.Int(key+"_count", v.List().Len()))
		default:
			attrs = append(attrs, slog.String(key, v.String()))
		}
		return true
	})
	return slog.GroupValue(attrs...)
}
