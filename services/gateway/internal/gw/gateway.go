package gw

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/rs/cors"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"
	_ "google.golang.org/genproto/googleapis/rpc/errdetails" // error details render as JSON
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	authv1 "lethe.dev/gen/lethe/auth/v1"
	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/gen/openapiv2"
	"lethe.dev/platform/authz"
	"lethe.dev/platform/errs"
	"lethe.dev/platform/grpcserver"
	"lethe.dev/platform/transport"
	"lethe.dev/services/gateway/internal/console"
	"lethe.dev/services/gateway/internal/drp"
)

// Backends are the gRPC connections the gateway fronts.
type Backends struct {
	Identity, Preferences, Sharing, Fulfillment *grpc.ClientConn
	// Downloads are the fulfillment replicas' HTTP download endpoints.
	Downloads []*url.URL
}

// Options tune the gateway.
type Options struct {
	Logger         *slog.Logger
	CORSOrigins    []string
	MaxBodyBytes   int64
	Timeout        time.Duration
	ServiceToken   string        // vouches for operators on proxied downloads (gRPC calls carry it as per-RPC credentials)
	RecentSignIn   time.Duration // tokens issued this recently count as a fresh sign-in
	SensitiveRate  float64       // per-second refill of sign-in/verification/request buckets
	SensitiveBurst int
	// JWKSRefetch is the least time between JWKS fetches triggered by unknown keys.
	JWKSRefetch time.Duration
	// SessionCheckTTL is how long identity's answer about a session is cached: a
	// revoked session is refused at most this long after its revocation.
	SessionCheckTTL time.Duration
	// TrustedProxies are the reverse proxies whose X-Forwarded-For names the client.
	TrustedProxies Proxies
	// TemporalUI is the Temporal Web UI's base URL the console links workflows to ("":
	// no link).
	TemporalUI string
	// DRPRedirectHosts are the hosts a DRP verification may redirect to (https only).
	DRPRedirectHosts []string
}

// principalKey carries the verified caller in a request context.
type principalKey struct{}

// routeKey carries the route the policy authorized in a request context.
type routeKey struct{}

// New returns the gateway's handler.
func New(ctx context.Context, b Backends, o Options) (http.Handler, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	routes := Routes()
	prefs := preferencesv1.NewPreferencesServiceClient(b.Preferences)
	mux := runtime.NewServeMux(
		runtime.WithMetadata(func(ctx context.Context, r *http.Request) metadata.MD {
			// The caller the gateway verified, for the backends' own authorization
			// (platform/authz). The service token travels as per-RPC credentials
			// (platform/transport).
			md := metadata.MD{}
			md.Set(authz.HeaderRole, authz.RoleAnonymous)
			if p, ok := r.Context().Value(principalKey{}).(*Principal); ok {
				switch p.Role {
				case authz.RoleOperator:
					md.Set(authz.HeaderRole, authz.RoleOperator)
					md.Set(authz.HeaderOperator, p.Operator)
				case authz.RoleMember:
					md.Set(authz.HeaderRole, authz.RoleMember)
					md.Set(authz.HeaderMember, p.Member)
					// Only a password sign-in counts, never a refresh (auth_time, not iat).
					if !p.AuthTime.IsZero() && time.Since(p.AuthTime) <= o.RecentSignIn {
						md.Set("x-lethe-recent-signin", "true")
					}
				}
				md.Set(authz.HeaderSession, p.Session)
			}
			md.Set("x-lethe-client-ip", o.TrustedProxies.ClientIP(r))
			return md
		}),
		// Only these headers reach the backends: nothing else a browser sends.
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithRoutingErrorHandler(func(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, code int) {
			c := codes.NotFound
			if code == http.StatusMethodNotAllowed {
				c = codes.Unimplemented
			}
			writeStatus(w, code, c, "ROUTE_NOT_FOUND", "no such route")
		}),
		// What the policy authorized is what runs: no X-HTTP-Method-Override, no
		// form-POST-as-GET fallback, and a last check on the dispatched method and route.
		runtime.WithDisableHTTPMethodOverride(),
		runtime.WithDisablePathLengthFallback(),
		runtime.WithMiddlewares(func(next runtime.HandlerFunc) runtime.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
				want, _ := r.Context().Value(routeKey{}).(*authz.Route)
				if got, _ := authz.Match(routes, r.Method, r.URL.Path); want == nil || got != want {
					writeStatus(w, http.StatusMethodNotAllowed, codes.Unimplemented, "ROUTE_NOT_FOUND", "no such route")
					return
				}
				next(w, r, params)
			}
		}),
		// A sign-in carries the device's Global Privacy Control signal to the member.
		runtime.WithForwardResponseOption(func(ctx context.Context, w http.ResponseWriter, m proto.Message) error {
			if res, ok := m.(*identityv1.SignInResponse); ok {
				applyDeviceGPC(ctx, o.Logger, prefs, res)
			}
			return nil
		}),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{MarshalOptions: protojson.MarshalOptions{EmitUnpopulated: false}, UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false}}),
	)
	for _, reg := range []func() error{
		func() error {
			return identityv1.RegisterIdentityServiceHandlerClient(ctx, mux, identityv1.NewIdentityServiceClient(b.Identity))
		},
		func() error {
			return preferencesv1.RegisterPreferencesServiceHandlerClient(ctx, mux, preferencesv1.NewPreferencesServiceClient(b.Preferences))
		},
		func() error {
			return sharingv1.RegisterSharingServiceHandlerClient(ctx, mux, sharingv1.NewSharingServiceClient(b.Sharing))
		},
		func() error {
			return fulfillmentv1.RegisterFulfillmentServiceHandlerClient(ctx, mux, fulfillmentv1.NewFulfillmentServiceClient(b.Fulfillment))
		},
		func() error {
			return fulfillmentv1.RegisterDataRightsServiceHandlerClient(ctx, mux, fulfillmentv1.NewDataRightsServiceClient(b.Fulfillment))
		},
	} {
		if err := reg(); err != nil {
			return nil, err
		}
	}
	g := &gateway{
		routes: routes, mux: mux, opts: o, backends: b,
		verifier:  &Verifier{Identity: identityv1.NewIdentityServiceClient(b.Identity), RefetchEvery: o.JWKSRefetch},
		sessions:  &Sessions{Identity: identityv1.NewIdentityServiceClient(b.Identity), TTL: o.SessionCheckTTL},
		prefs:     prefs,
		perIP:     &Limiter{Rate: limitOf(o.SensitiveRate), Burst: o.SensitiveBurst},
		perMember: &Limiter{Rate: limitOf(o.SensitiveRate), Burst: o.SensitiveBurst},
		signUps:   &Limiter{Rate: limitOf(o.SensitiveRate), Burst: o.SensitiveBurst},
	}
	top := http.NewServeMux()
	top.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openapiv2.Spec)
	})
	top.HandleFunc("GET /healthz", g.health)
	var downloads http.Handler
	if len(b.Downloads) > 0 {
		downloads = g.downloads(downloadProxy(b.Downloads))
		top.Handle("GET /v1/downloads/", downloads)
	}
	// The Data Rights Protocol has its own HTTP shape (signed text/plain bodies, agents'
	// bearer tokens, DRP error bodies): its own handler, outside the JSON API's policy.
	verifyLimit := &Limiter{Rate: limitOf(o.SensitiveRate), Burst: o.SensitiveBurst}
	(&drp.Handler{DataRights: fulfillmentv1.NewDataRightsServiceClient(b.Fulfillment), Downloads: downloads, Logger: o.Logger,
		Timeout: o.Timeout, MaxBody: o.MaxBodyBytes, RedirectHosts: o.DRPRedirectHosts, Allow: func(r *http.Request) bool { return verifyLimit.Allow(o.TrustedProxies.ClientIP(r)) }}).Register(top)
	// The operators' web console (server-rendered HTML behind its own cookie session).
	con, err := console.New(console.Options{Identity: b.Identity, Sharing: b.Sharing, Fulfillment: b.Fulfillment,
		Verify: func(ctx context.Context, tok string) (console.Operator, bool) {
			p, err := g.verifier.Verify(ctx, tok)
			if err != nil || p.Role != authz.RoleOperator {
				return console.Operator{}, false
			}
			return console.Operator{ID: p.Operator, Session: p.Session}, true
		},
		ClientIP:    o.TrustedProxies.ClientIP,
		AllowSignIn: func(r *http.Request) bool { return g.perIP.Allow(o.TrustedProxies.ClientIP(r)) },
		TemporalUI:  o.TemporalUI, Timeout: o.Timeout, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	top.Handle("/console/", http.MaxBytesHandler(con, o.MaxBodyBytes))
	top.Handle("GET /console", http.RedirectHandler("/console/", http.StatusSeeOther))
	top.Handle("/", g)
	var h http.Handler = top
	h = cors.New(cors.Options{AllowedOrigins: o.CORSOrigins, AllowedMethods: []string{"GET", "POST", "PATCH", "PUT", "DELETE"},
		AllowedHeaders: []string{"Authorization", "Content-Type", "Sec-GPC", DeviceHeader}, MaxAge: 600}).Handler(h)
	return g.logged(h), nil
}

type gateway struct {
	routes    []authz.Route
	mux       *runtime.ServeMux
	opts      Options
	backends  Backends
	verifier  *Verifier
	sessions  *Sessions
	prefs     preferencesv1.PreferencesServiceClient
	perIP     *Limiter
	perMember *Limiter
	signUps   *Limiter
}

// writeStatus writes an error in the same JSON shape the backends' errors have
// (google.rpc.Status with one ErrorInfo).
func writeStatus(w http.ResponseWriter, httpStatus int, code codes.Code, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": int(code), "message": msg, "details": []any{map[string]any{
		"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": grpcserver.ErrorDomain}}})
}

// sensitive RPCs are rate-limited per IP and per caller: credentials and codes.
var sensitive = map[string]bool{
	"SignIn": true, "RefreshSession": true, "SignInOperator": true, "SendVerificationCode": true,
	"CheckVerificationCode": true, "VerifyPrivacyRequest": true, "CreatePrivacyRequest": true,
	"ChangeEmail": true, "ConfirmEmailChange": true, "ResendVerification": true,
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-HTTP-Method-Override") != "" || r.Header.Get("X-HTTP-Method") != "" || r.Header.Get("X-Method-Override") != "" {
		// The method the policy checks is the method that runs; no tunnelling.
		writeStatus(w, http.StatusMethodNotAllowed, codes.Unimplemented, "METHOD_OVERRIDE_REFUSED", "method override headers are not accepted")
		return
	}
	route, member := authz.Match(g.routes, r.Method, r.URL.Path)
	if route == nil {
		writeStatus(w, http.StatusNotFound, codes.NotFound, "ROUTE_NOT_FOUND", "no such route")
		return
	}
	if r.ContentLength > g.opts.MaxBodyBytes {
		writeStatus(w, http.StatusRequestEntityTooLarge, codes.InvalidArgument, "BODY_TOO_LARGE", "the request body is too large")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, g.opts.MaxBodyBytes)
	var p *Principal
	public := route.Access == authv1.Access_ACCESS_PUBLIC
	if auth := r.Header.Get("Authorization"); auth != "" || !public {
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		var err error
		if p, err = g.verifier.Verify(r.Context(), tok); err != nil || !ok {
			if !public {
				w.Header().Set("WWW-Authenticate", `Bearer realm="lethe"`)
				writeStatus(w, http.StatusUnauthorized, codes.Unauthenticated, "UNAUTHENTICATED", "a valid access token is required")
				return
			}
			p = nil
		}
	}
	if p != nil {
		switch err := g.sessions.Check(r.Context(), p); {
		case errors.Is(err, errSessionUnknown):
			if !public {
				w.Header().Set("WWW-Authenticate", `Bearer realm="lethe", error="invalid_token"`)
				writeStatus(w, http.StatusUnauthorized, codes.Unauthenticated, "SESSION_REVOKED", "the session has ended; sign in again")
				return
			}
			p = nil
		case err != nil:
			writeStatus(w, http.StatusServiceUnavailable, codes.Unavailable, "SESSION_CHECK_UNAVAILABLE", "the session could not be checked; try again")
			return
		}
	}
	// The RPC's declared access, the same decision every backend makes again.
	if err := authz.Allow(route.Access, p.authz(), member); err != nil {
		e, _ := err.(*errs.Error)
		switch e.Reason {
		case "MEMBER_NOT_FOUND": // the same answer an unknown member gets: nothing about member B leaks
			writeStatus(w, http.StatusNotFound, codes.NotFound, e.Reason, "member not found")
		case "UNAUTHENTICATED":
			w.Header().Set("WWW-Authenticate", `Bearer realm="lethe"`)
			writeStatus(w, http.StatusUnauthorized, codes.Unauthenticated, e.Reason, "a valid access token is required")
		case "OPERATOR_ONLY":
			writeStatus(w, http.StatusForbidden, codes.PermissionDenied, e.Reason, "this route is for operators")
		default:
			writeStatus(w, http.StatusNotFound, codes.NotFound, "ROUTE_NOT_FOUND", "no such route")
		}
		return
	}
	// Sign-up has its own per-address bucket: each call costs an argon2id hash, and
	// signing up should not eat into the same address's sign-in attempts.
	if string(route.RPC.Name()) == "CreateMember" && !g.signUps.Allow(g.opts.TrustedProxies.ClientIP(r)) {
		w.Header().Set("Retry-After", "60")
		writeStatus(w, http.StatusTooManyRequests, codes.ResourceExhausted, "RATE_LIMITED", "too many requests; slow down")
		return
	}
	if sensitive[string(route.RPC.Name())] {
		if !g.perIP.Allow(g.opts.TrustedProxies.ClientIP(r)) || (p != nil && !g.perMember.Allow(p.Role+"/"+p.Subject())) {
			w.Header().Set("Retry-After", "60")
			writeStatus(w, http.StatusTooManyRequests, codes.ResourceExhausted, "RATE_LIMITED", "too many requests; slow down")
			return
		}
	}
	gpc := r.Header.Get("Sec-GPC") == "1"
	if p != nil && p.Role == authz.RoleMember && gpc {
		g.recordGPC(p.Member)
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.opts.Timeout)
	defer cancel()
	if p == nil {
		// A signed-out visitor: their signal is kept against their device, and a sign-in
		// on it carries it to the member (applyDeviceGPC).
		dev := deviceID(r)
		if gpc {
			dev = g.recordDeviceGPC(w, dev)
		}
		ctx = context.WithValue(ctx, deviceKey{}, deviceSignal{ID: dev, GPC: gpc})
	}
	if p != nil {
		ctx = context.WithValue(ctx, principalKey{}, p)
	}
	ctx = context.WithValue(ctx, routeKey{}, route)
	g.mux.ServeHTTP(w, r.WithContext(ctx))
}

// downloads proxies signed archive downloads. The link is the credential; when an
// operator's token comes with it, the gateway vouches for the operator (with the service
// credential) so fulfillment writes the download to the audit log, with the reason from
// X-Lethe-Reason. Whatever a client sent in those headers is dropped first.
func (g *gateway) downloads(proxy http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del(downloadOperatorHeader)
		r.Header.Del(transport.TokenHeader)
		reason := r.Header.Get(downloadReasonHeader)
		r.Header.Del(downloadReasonHeader)
		if auth := r.Header.Get("Authorization"); auth != "" {
			tok, ok := strings.CutPrefix(auth, "Bearer ")
			p, err := g.verifier.Verify(r.Context(), tok)
			if err != nil || !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="lethe"`)
				writeStatus(w, http.StatusUnauthorized, codes.Unauthenticated, "UNAUTHENTICATED", "a valid access token is required")
				return
			}
			r.Header.Del("Authorization") // the token never reaches the archive server
			if p.Role == authz.RoleOperator {
				r.Header.Set(downloadOperatorHeader, p.Operator)
				r.Header.Set(downloadReasonHeader, reason)
				r.Header.Set(transport.TokenHeader, g.opts.ServiceToken)
			}
		}
		proxy.ServeHTTP(w, r)
	})
}

// The headers fulfillment's download server reads (its grpcapi.Download*Header).
const (
	downloadOperatorHeader = "X-Lethe-Operator"
	downloadReasonHeader   = "X-Lethe-Reason"
)

// recordGPC records a Global Privacy Control signal without delaying the request; a
// failure is logged without personal data and retried on the member's next request.
func (g *gateway) recordGPC(member string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := g.prefs.RecordGlobalPrivacyControl(ctx, &preferencesv1.RecordGlobalPrivacyControlRequest{Name: "members/" + member + "/adPreferences"}); err != nil {
			g.opts.Logger.Warn("recording a GPC signal failed", "code", status.Code(err).String())
		}
	}()
}

// health answers 200 when every backend reports SERVING.
func (g *gateway) health(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	out := map[string]string{}
	ok := true
	for name, c := range map[string]*grpc.ClientConn{"identity": g.backends.Identity, "preferences": g.backends.Preferences, "sharing": g.backends.Sharing, "fulfillment": g.backends.Fulfillment} {
		res, err := healthpb.NewHealthClient(c).Check(ctx, &healthpb.HealthCheckRequest{})
		st := res.GetStatus().String()
		if err != nil {
			st = status.Code(err).String()
		}
		out[name] = st
		ok = ok && st == "SERVING"
	}
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(out)
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(c int) { s.code = c; s.ResponseWriter.WriteHeader(c) }

// Flush lets streamed downloads through.
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// logged writes one access-log line per request: method, route template, status and
// duration. Never bodies, tokens, query strings or raw paths. The request's span continues
// the caller's W3C trace context (traceparent) and carries the same fields, and its
// duration is recorded in http.server.request.duration by route template and status.
func (g *gateway) logged(next http.Handler) http.Handler {
	prop := otel.GetTextMapPropagator()
	tracer := otel.Tracer("lethe.dev/gateway")
	hist, _ := otel.Meter("lethe.dev/gateway").Float64Histogram("http.server.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of the gateway's HTTP requests by method, route template and status."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		tmpl := "unmatched"
		if route, _ := authz.Match(g.routes, r.Method, r.URL.Path); route != nil {
			tmpl = route.Template
		}
		ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, r.Method+" "+tmpl, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("http.route", tmpl)))
		r = r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w, code: 200}
		defer func() {
			if rec := recover(); rec != nil {
				g.opts.Logger.ErrorContext(ctx, "panic in gateway handler")
				writeStatus(sw, http.StatusInternalServerError, codes.Internal, "INTERNAL", "internal error")
			}
			d := time.Since(start)
			if tmpl == "unmatched" && r.Pattern != "" {
				tmpl = r.Pattern // routes of the top mux (/drp, downloads): the pattern, never the path
				span.SetName(r.Method + " " + tmpl)
				span.SetAttributes(attribute.String("http.route", tmpl))
			}
			span.SetAttributes(attribute.Int("http.response.status_code", sw.code))
			if sw.code >= 500 {
				span.SetStatus(otelcodes.Error, http.StatusText(sw.code))
			}
			span.End()
			hist.Record(ctx, d.Seconds(), metric.WithAttributes(attribute.String("http.request.method", r.Method),
				attribute.String("http.route", tmpl), attribute.Int("http.response.status_code", sw.code)))
			g.opts.Logger.InfoContext(ctx, "http request", "method", r.Method, "route", tmpl, "status", strconv.Itoa(sw.code), "duration", d)
		}()
		next.ServeHTTP(sw, r)
	})
}

func limitOf(perSecond float64) rate.Limit { return rate.Limit(perSecond) }
