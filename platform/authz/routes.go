package authz

import (
	"regexp"
	"slices"
	"strings"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	authv1 "lethe.dev/gen/lethe/auth/v1"
)

// Route is one HTTP binding (google.api.http) of a Lethe RPC, with the RPC's access.
type Route struct {
	Method   string // HTTP method
	Template string // the binding's path template, e.g. "/v1/{name=members/*}:disable"
	RPC      protoreflect.MethodDescriptor
	Access   authv1.Access

	re          *regexp.Regexp
	memberGroup int // index of the members/{member} segment in re, 0 when none
}

// Key is "METHOD template".
func (r Route) Key() string { return r.Method + " " + r.Template }

// variable is one {field=pattern} of a path template.
type variable struct {
	field   string   // dotted field path in the request message
	pattern []string // segments: literals, "*" or "**"
}

// segment is a literal piece of a template or a variable.
type segment struct {
	literal string
	v       *variable
}

func parseTemplate(t string) []segment {
	var out []segment
	for t != "" {
		i := strings.IndexByte(t, '{')
		if i < 0 {
			out = append(out, segment{literal: t})
			break
		}
		if i > 0 {
			out = append(out, segment{literal: t[:i]})
		}
		j := strings.IndexByte(t, '}')
		field, pat, ok := strings.Cut(t[i+1:j], "=")
		if !ok {
			pat = "*"
		}
		out = append(out, segment{v: &variable{field: field, pattern: strings.Split(pat, "/")}})
		t = t[j+1:]
	}
	return out
}

func bindings(rule *annotations.HttpRule) [][2]string {
	var out [][2]string
	switch p := rule.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		out = append(out, [2]string{"GET", p.Get})
	case *annotations.HttpRule_Post:
		out = append(out, [2]string{"POST", p.Post})
	case *annotations.HttpRule_Put:
		out = append(out, [2]string{"PUT", p.Put})
	case *annotations.HttpRule_Patch:
		out = append(out, [2]string{"PATCH", p.Patch})
	case *annotations.HttpRule_Delete:
		out = append(out, [2]string{"DELETE", p.Delete})
	case *annotations.HttpRule_Custom:
		out = append(out, [2]string{strings.ToUpper(p.Custom.GetKind()), p.Custom.GetPath()})
	}
	for _, b := range rule.GetAdditionalBindings() {
		out = append(out, bindings(b)...)
	}
	return out
}

// httpRule returns an RPC's google.api.http rule, or nil.
func httpRule(md protoreflect.MethodDescriptor) *annotations.HttpRule {
	opts := md.Options()
	if opts == nil || !proto.HasExtension(opts, annotations.E_Http) {
		return nil
	}
	r, _ := proto.GetExtension(opts, annotations.E_Http).(*annotations.HttpRule)
	return r
}

// Routes lists every HTTP binding of every Lethe RPC in files, literal routes before
// templated ones (so /v1/members:lookup wins over /v1/{name=members/*}).
func Routes(files *protoregistry.Files) []Route {
	var out []Route
	Methods(files, func(md protoreflect.MethodDescriptor) {
		rule := httpRule(md)
		if rule == nil {
			return
		}
		for _, b := range bindings(rule) {
			r := Route{Method: b[0], Template: b[1], RPC: md, Access: Of(md)}
			var re strings.Builder
			re.WriteString("^")
			groups := 0
			for _, s := range parseTemplate(b[1]) {
				if s.v == nil {
					re.WriteString(regexp.QuoteMeta(s.literal))
					continue
				}
				for k, p := range s.v.pattern {
					if k > 0 {
						re.WriteString("/")
					}
					switch p {
					case "*":
						groups++
						if k > 0 && s.v.pattern[k-1] == "members" && r.memberGroup == 0 {
							r.memberGroup = groups
						}
						re.WriteString(`([^/:]+)`)
					case "**":
						groups++
						re.WriteString(`(.+)`)
					default:
						re.WriteString(regexp.QuoteMeta(p))
					}
				}
			}
			re.WriteString("$")
			r.re = regexp.MustCompile(re.String())
			out = append(out, r)
		}
	})
	slices.SortFunc(out, func(a, b Route) int {
		ca, cb := strings.Count(a.Template, "*"), strings.Count(b.Template, "*")
		if ca != cb {
			return ca - cb
		}
		return strings.Compare(a.Key(), b.Key())
	})
	return out
}

// Match finds the route of a request and the member id it names ("" when none).
func Match(routes []Route, method, path string) (*Route, string) {
	for i := range routes {
		r := &routes[i]
		if r.Method != method {
			continue
		}
		if m := r.re.FindStringSubmatch(path); m != nil {
			member := ""
			if r.memberGroup > 0 {
				member = m[r.memberGroup]
			}
			return r, member
		}
	}
	return nil, ""
}

// Example is a concrete path of the route acting on member; every other variable
// segment is id.
func (r Route) Example(member, id string) string {
	var b strings.Builder
	for _, s := range parseTemplate(r.Template) {
		if s.v == nil {
			b.WriteString(s.literal)
			continue
		}
		for k, p := range s.v.pattern {
			if k > 0 {
				b.WriteString("/")
			}
			switch {
			case p == "*" && k > 0 && s.v.pattern[k-1] == "members":
				b.WriteString(member)
			case p == "*" || p == "**":
				b.WriteString(id)
			default:
				b.WriteString(p)
			}
		}
	}
	return b.String()
}

// memberFields are the request fields whose value names the member an RPC acts on: the
// path variables whose pattern starts with members/.
func memberFields(md protoreflect.MethodDescriptor) []string {
	rule := httpRule(md)
	if rule == nil {
		return nil
	}
	var out []string
	for _, b := range bindings(rule) {
		for _, s := range parseTemplate(b[1]) {
			if s.v != nil && s.v.pattern[0] == "members" && !slices.Contains(out, s.v.field) {
				out = append(out, s.v.field)
			}
		}
	}
	return out
}

// targetFields are all the path variables of an RPC: the resource it acts on.
func targetFields(md protoreflect.MethodDescriptor) []string {
	rule := httpRule(md)
	if rule == nil {
		return nil
	}
	var out []string
	for _, b := range bindings(rule) {
		for _, s := range parseTemplate(b[1]) {
			if s.v != nil && !slices.Contains(out, s.v.field) {
				out = append(out, s.v.field)
			}
		}
	}
	return out
}

// stringAt reads a string field by dotted path ("member.name") from m.
func stringAt(m protoreflect.Message, path string) string {
	parts := strings.Split(path, ".")
	for i, p := range parts {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(p))
		if fd == nil || fd.IsList() || fd.IsMap() {
			return ""
		}
		if i == len(parts)-1 {
			if fd.Kind() != protoreflect.StringKind {
				if fd.Kind() == protoreflect.Int32Kind || fd.Kind() == protoreflect.Int64Kind {
					return m.Get(fd).String()
				}
				return ""
			}
			return m.Get(fd).String()
		}
		if fd.Message() == nil || !m.Has(fd) {
			return ""
		}
		m = m.Get(fd).Message()
	}
	return ""
}

// MemberOf returns the member id a request of md acts on ("" when it names none).
// Every members/ field of the request must name the same member, or none is returned.
func MemberOf(md protoreflect.MethodDescriptor, req proto.Message) string {
	if req == nil {
		return ""
	}
	member := ""
	for _, f := range memberFields(md) {
		v := stringAt(req.ProtoReflect(), f)
		rest, ok := strings.CutPrefix(v, "members/")
		if !ok {
			continue
		}
		id, _, _ := strings.Cut(rest, "/")
		if member != "" && id != member {
			return ""
		}
		member = id
	}
	return member
}
