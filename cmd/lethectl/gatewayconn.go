package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	spb "google.golang.org/genproto/googleapis/rpc/status"

	_ "google.golang.org/genproto/googleapis/rpc/errdetails" // error details render from JSON
)

// gatewayConn is a grpc.ClientConnInterface that sends each unary call to the gateway as
// the JSON/REST call its google.api.http option declares, so the generated clients work
// the same over the gateway (with an operator token) as over gRPC (with the service
// credential). The routes are read from the descriptors, never listed here.
type gatewayConn struct {
	base   string // e.g. http://127.0.0.1:8080
	token  string // operator access token; empty for public calls
	client *http.Client
}

var _ grpc.ClientConnInterface = (*gatewayConn)(nil)

// NewStream implements grpc.ClientConnInterface; no command streams.
func (g *gatewayConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "lethectl: streaming calls do not go through the gateway")
}

// Invoke implements grpc.ClientConnInterface.
func (g *gatewayConn) Invoke(ctx context.Context, method string, args, reply any, _ ...grpc.CallOption) error {
	in, ok1 := args.(proto.Message)
	out, ok2 := reply.(proto.Message)
	if !ok1 || !ok2 {
		return status.Error(codes.Internal, "lethectl: not a protobuf message")
	}
	rule, err := httpRule(method)
	if err != nil {
		return err
	}
	verb, tmpl, body := ruleVerb(rule)
	req, err := buildRequest(ctx, g.base, verb, tmpl, body, in)
	if err != nil {
		return err
	}
	if g.token != "" {
		req.Header.Set("Authorization", "Bearer "+g.token)
	}
	c := g.client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return status.Errorf(codes.Unavailable, "gateway %s: %v", g.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return status.Errorf(codes.Unavailable, "gateway %s: %v", g.base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return httpError(resp.StatusCode, raw)
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(raw, out)
}

// httpError turns the gateway's JSON error (a google.rpc.Status) into a gRPC status
// error, so both transports fail alike.
func httpError(code int, raw []byte) error {
	var st spb.Status
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, &st); err != nil || st.GetCode() == 0 {
		c := codes.Unknown
		switch code {
		case http.StatusUnauthorized:
			c = codes.Unauthenticated
		case http.StatusForbidden:
			c = codes.PermissionDenied
		case http.StatusNotFound:
			c = codes.NotFound
		case http.StatusBadRequest:
			c = codes.InvalidArgument
		}
		return status.Errorf(c, "HTTP %d: %s", code, strings.TrimSpace(string(raw)))
	}
	return status.FromProto(&st).Err()
}

// httpRule finds the google.api.http option of a gRPC full method name.
func httpRule(method string) (*annotations.HttpRule, error) {
	name := strings.Replace(strings.TrimPrefix(method, "/"), "/", ".", 1)
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
	md, ok := d.(protoreflect.MethodDescriptor)
	if err != nil || !ok {
		return nil, status.Errorf(codes.Unimplemented, "lethectl: unknown method %s", method)
	}
	rule, _ := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
	if rule == nil || rule.GetPattern() == nil {
		return nil, status.Errorf(codes.Unimplemented, "%s is not served by the gateway: use the service credential (--direct)", name)
	}
	return rule, nil
}

func ruleVerb(r *annotations.HttpRule) (verb, tmpl, body string) {
	switch p := r.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		return http.MethodGet, p.Get, r.GetBody()
	case *annotations.HttpRule_Post:
		return http.MethodPost, p.Post, r.GetBody()
	case *annotations.HttpRule_Patch:
		return http.MethodPatch, p.Patch, r.GetBody()
	case *annotations.HttpRule_Put:
		return http.MethodPut, p.Put, r.GetBody()
	case *annotations.HttpRule_Delete:
		return http.MethodDelete, p.Delete, r.GetBody()
	}
	return "", "", ""
}

var pathVar = regexp.MustCompile(`\{([a-z0-9_.]+)(=[^}]*)?\}`)

// buildRequest expands the path template with the message's fields, sends the declared
// body as JSON and every other set field as a query parameter.
func buildRequest(ctx context.Context, base, verb, tmpl, body string, in proto.Message) (*http.Request, error) {
	msg := proto.Clone(in)
	var expandErr error
	path := pathVar.ReplaceAllStringFunc(tmpl, func(m string) string {
		field := pathVar.FindStringSubmatch(m)[1]
		v, ok := takeString(msg.ProtoReflect(), strings.Split(field, "."))
		if !ok || v == "" {
			expandErr = status.Errorf(codes.InvalidArgument, "%s is required", field)
		}
		// Resource names keep their slashes; each segment is escaped.
		segs := strings.Split(v, "/")
		for i, s := range segs {
			segs[i] = url.PathEscape(s)
		}
		return strings.Join(segs, "/")
	})
	if expandErr != nil {
		return nil, expandErr
	}
	var rd io.Reader
	q := url.Values{}
	switch body {
	case "*":
		raw, err := protojson.Marshal(msg)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
	case "":
		addQuery(q, "", msg.ProtoReflect())
	default:
		fd := msg.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(body))
		if fd == nil || fd.Message() == nil {
			return nil, fmt.Errorf("lethectl: body field %q", body)
		}
		raw, err := protojson.Marshal(msg.ProtoReflect().Get(fd).Message().Interface())
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(raw)
		msg.ProtoReflect().Clear(fd)
		addQuery(q, "", msg.ProtoReflect())
	}
	u := strings.TrimRight(base, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, verb, u, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// takeString reads and clears the string field at path (it travels in the URL path).
func takeString(m protoreflect.Message, path []string) (string, bool) {
	fd := m.Descriptor().Fields().ByName(protoreflect.Name(path[0]))
	if fd == nil {
		return "", false
	}
	if len(path) > 1 {
		if fd.Message() == nil || !m.Has(fd) {
			return "", false
		}
		// The value stays in a body message (e.g. partner.name in PATCH): read, keep.
		sub := m.Get(fd).Message()
		nfd := sub.Descriptor().Fields().ByName(protoreflect.Name(path[1]))
		if nfd == nil || len(path) > 2 {
			return "", false
		}
		return sub.Get(nfd).String(), true
	}
	v := m.Get(fd).String()
	m.Clear(fd)
	return v, true
}

// addQuery encodes the set fields of m as grpc-gateway query parameters (lowerCamel
// names, enums by name, nested messages with dotted names, field masks comma-joined).
func addQuery(q url.Values, prefix string, m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		key := prefix + fd.JSONName()
		switch {
		case fd.Message() != nil && fd.Message().FullName() == "google.protobuf.FieldMask":
			var paths []string
			l := v.Message().Get(fd.Message().Fields().ByName("paths")).List()
			for i := range l.Len() {
				paths = append(paths, l.Get(i).String())
			}
			q.Set(key, strings.Join(paths, ","))
		case fd.IsList():
			l := v.List()
			for i := range l.Len() {
				q.Add(key, scalar(fd, l.Get(i)))
			}
		case fd.Message() != nil:
			addQuery(q, key+".", v.Message())
		default:
			q.Set(key, scalar(fd, v))
		}
		return true
	})
}

func scalar(fd protoreflect.FieldDescriptor, v protoreflect.Value) string {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name())
		}
		return strconv.Itoa(int(v.Enum()))
	case protoreflect.BoolKind:
		return strconv.FormatBool(v.Bool())
	}
	return v.String()
}

// errNoGateway is returned when a command needs the gateway but none is configured.
var errNoGateway = errors.New("no gateway URL: set --gateway or LETHECTL_GATEWAY")
