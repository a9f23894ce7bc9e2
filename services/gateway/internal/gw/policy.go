// Package gw is the gateway: JSON/REST in front of every Lethe gRPC service, with
// authentication against identity's JWKS, per-route authorization, limits and errors in
// one JSON shape.
package gw

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Access is who may call a route.
type Access int

// Route access levels.
const (
	// Public routes need no token (sign-up, sign-in, JWKS, unsubscribe links, receipts,
	// partner callbacks).
	Public Access = iota
	// Authenticated routes need any valid token.
	Authenticated
	// Self routes act on /v1/members/{member}/…: the token's member must be {member};
	// operators may act on any member. Anyone else gets NOT_FOUND, as for an unknown
	// member, so nothing leaks.
	Self
	// Operator routes need the operator role.
	Operator
)

func (a Access) String() string {
	return [...]string{"public", "authenticated", "self", "operator"}[a]
}

// explicit lists the routes whose access is not derived from their path.
var explicit = map[string]Access{
	"POST /v1/members":                    Public,
	"POST /v1/auth:signIn":                Public,
	"POST /v1/auth:refresh":               Public,
	"POST /v1/auth:signOut":               Public,
	"GET /v1/auth/jwks":                   Public,
	"POST /v1/unsubscribe":                Public,
	"POST /v1/receipts/{requestId}:fetch": Public,
	"GET /v1/receipts:keys":               Public,
	"POST /v1/partners/{partner}/onwardErasures/{onwardErasure}:acknowledge": Public,
	"GET /v1/members":                                                             Operator,
	"POST /v1/members:lookup":                                                     Operator,
	"POST /v1/members/{member}:reportChild":                                       Operator,
	"POST /v1/partners":                                                           Operator,
	"GET /v1/partners":                                                            Operator,
	"GET /v1/partners/{partner}":                                                  Operator,
	"GET /v1/partners/{partner}/purposes":                                         Operator,
	"PATCH /v1/partners/{partner}":                                                Operator,
	"POST /v1/partners/{partner}/purposes":                                        Operator,
	"POST /v1/partners/{partner}/purposes/{purpose}:notifyMembers":                Operator,
	"POST /v1/members/{member}/privacyRequests/{privacyRequest}:extend":           Operator,
	"POST /v1/members/{member}/privacyRequests/{privacyRequest}:setLegalHold":     Operator,
	"POST /v1/members/{member}/privacyRequests/{privacyRequest}:releaseLegalHold": Operator,
	"GET /v1/requestStatistics/{year}":                                            Operator,
}

// Route is one route of the OpenAPI spec with its access.
type Route struct {
	Method, Template string
	Access           Access
	re               *regexp.Regexp
	memberGroup      int // index of {member} in re's groups, 0 when none
}

// Key is "METHOD template".
func (r Route) Key() string { return r.Method + " " + r.Template }

var varRE = regexp.MustCompile(`\{[^}]+\}`)

// Routes reads the routes of an OpenAPI v2 document and assigns each its access:
// explicit entries first, then Self for everything under /v1/members/{member}, then
// Authenticated.
func Routes(spec []byte) ([]Route, error) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(spec, &doc); err != nil {
		return nil, fmt.Errorf("gateway: OpenAPI spec: %w", err)
	}
	var out []Route
	for path, ops := range doc.Paths {
		for method := range ops {
			r := Route{Method: strings.ToUpper(method), Template: path}
			switch a, ok := explicit[r.Key()]; {
			case ok:
				r.Access = a
			case strings.HasPrefix(path, "/v1/members/{member}"):
				r.Access = Self
			default:
				r.Access = Authenticated
			}
			group := 0
			var b strings.Builder
			b.WriteString("^")
			rest := path
			n := 0
			for {
				loc := varRE.FindStringIndex(rest)
				if loc == nil {
					b.WriteString(regexp.QuoteMeta(rest))
					break
				}
				b.WriteString(regexp.QuoteMeta(rest[:loc[0]]))
				n++
				if rest[loc[0]:loc[1]] == "{member}" {
					group = n
				}
				b.WriteString(`([^/:]+)`)
				rest = rest[loc[1]:]
			}
			b.WriteString("$")
			r.re = regexp.MustCompile(b.String())
			r.memberGroup = group
			out = append(out, r)
		}
	}
	// Literal routes before templated ones, so /v1/members:lookup beats /v1/members/{member}.
	sort.Slice(out, func(i, j int) bool {
		ci, cj := strings.Count(out[i].Template, "{"), strings.Count(out[j].Template, "{")
		if ci != cj {
			return ci < cj
		}
		return out[i].Key() < out[j].Key()
	})
	return out, nil
}

// Match finds the route of a request and the {member} it names ("" when none).
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

// Explicit returns the explicitly classified route keys (for the spec test).
func Explicit() map[string]Access { return explicit }
