// Package console is the privacy team's web console, served by the gateway at /console/:
// server-rendered HTML (html/template, assets embedded), no JavaScript. It calls the
// backends over gRPC as the signed-in operator, so every backend enforces the operator's
// access again and writes every operator action to the audit log.
package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	"lethe.dev/platform/authz"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Operator is a verified operator.
type Operator struct {
	ID, Session string
}

// Options build a console.
type Options struct {
	Identity, Sharing, Fulfillment *grpc.ClientConn
	// Verify checks an access token and returns the operator it names (false: not a
	// valid operator token).
	Verify func(ctx context.Context, token string) (Operator, bool)
	// ClientIP is the caller's address (trusted-proxy aware), passed to identity for
	// its sign-in throttling.
	ClientIP func(*http.Request) string
	// AllowSignIn rate-limits sign-in attempts per client (the gateway's sensitive bucket).
	AllowSignIn func(*http.Request) bool
	// TemporalUI is the Temporal Web UI's base URL ("" hides the workflow link).
	TemporalUI string
	// Namespace is the Temporal namespace of the workflows ("lethe").
	Namespace string
	Timeout   time.Duration
	Logger    *slog.Logger
	Now       func() time.Time
}

// Console is the HTTP handler.
type Console struct {
	o           Options
	identity    identityv1.IdentityServiceClient
	sharing     sharingv1.SharingServiceClient
	fulfillment fulfillmentv1.FulfillmentServiceClient
	pages       map[string]*template.Template
	mux         *http.ServeMux
}

const (
	sessionCookie = "lethe_console"
	preCookie     = "lethe_console_pre" // double-submit token of the sign-in form
	base          = "/console/"
)

// New returns the console.
func New(o Options) (*Console, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Namespace == "" {
		o.Namespace = "lethe"
	}
	c := &Console{o: o, identity: identityv1.NewIdentityServiceClient(o.Identity), sharing: sharingv1.NewSharingServiceClient(o.Sharing),
		fulfillment: fulfillmentv1.NewFulfillmentServiceClient(o.Fulfillment), pages: map[string]*template.Template{}}
	layout, err := assets.ReadFile("templates/layout.html")
	if err != nil {
		return nil, err
	}
	entries, _ := fs.Glob(assets, "templates/*.html")
	for _, e := range entries {
		name := strings.TrimSuffix(strings.TrimPrefix(e, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		body, _ := assets.ReadFile(e)
		t, err := template.New("layout").Funcs(c.funcs()).Parse(string(layout))
		if err != nil {
			return nil, err
		}
		if _, err := t.Parse(string(body)); err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	static, _ := fs.Sub(assets, "static")
	m := http.NewServeMux()
	m.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /console/{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, base+"queue", http.StatusSeeOther) })
	m.HandleFunc("GET /console/signin", c.signInForm)
	m.HandleFunc("POST /console/signin", c.signIn)
	m.HandleFunc("POST /console/signout", c.authed(c.signOut))
	m.HandleFunc("GET /console/queue", c.authed(c.queue))
	m.HandleFunc("GET /console/requests/{member}/{request}", c.authed(c.request))
	m.HandleFunc("POST /console/requests/{member}/{request}/{action}", c.authed(c.act))
	m.HandleFunc("GET /console/partners", c.authed(c.partners))
	m.HandleFunc("GET /console/partners/new", c.authed(c.partnerNew))
	m.HandleFunc("POST /console/partners", c.authed(c.partnerCreate))
	m.HandleFunc("GET /console/partners/{partner}", c.authed(c.partner))
	m.HandleFunc("POST /console/partners/{partner}", c.authed(c.partnerUpdate))
	m.HandleFunc("POST /console/partners/{partner}/purposes", c.authed(c.purposeCreate))
	m.HandleFunc("GET /console/figures", c.authed(c.figures))
	m.HandleFunc("GET /console/figures.csv", c.authed(c.figuresCSV))
	m.HandleFunc("GET /console/audit", c.authed(c.audit))
	c.mux = m
	return c, nil
}

// ServeHTTP serves /console/ with security headers on every answer.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin") // no-referrer would make browsers send "Origin: null" on our own forms
	h.Set("X-Frame-Options", "DENY")
	if !strings.HasPrefix(r.URL.Path, "/console/static/") {
		h.Set("Cache-Control", "no-store")
	}
	if r.Method == http.MethodPost && !sameOrigin(r) {
		http.Error(w, "cross-origin form refused", http.StatusForbidden)
		return
	}
	c.mux.ServeHTTP(w, r)
}

// sameOrigin refuses a POST whose Origin (or, without one, Referer) names another site.
// Browsers send Origin on every POST; the CSRF token is the second check.
func sameOrigin(r *http.Request) bool {
	src := r.Header.Get("Origin")
	if src == "" {
		src = r.Header.Get("Referer")
	}
	if src == "" {
		return true // not a browser form; the CSRF token still has to match
	}
	u, err := url.Parse(src)
	return err == nil && u.Host == r.Host
}

// session is a signed-in operator's request.
type session struct {
	op    Operator
	token string
	csrf  string
}

// csrfToken is derived from the session token: a page served to the operator carries it
// in every form, and a cross-site page cannot know it (the cookie is HttpOnly).
func csrfToken(token string) string {
	h := sha256.Sum256([]byte("lethe-console-csrf\x00" + token))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

func (c *Console) authed(next func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie(sessionCookie)
		if err != nil || ck.Value == "" {
			c.toSignIn(w, r)
			return
		}
		op, ok := c.o.Verify(r.Context(), ck.Value)
		if !ok {
			clearCookie(w, r, sessionCookie)
			c.toSignIn(w, r)
			return
		}
		s := &session{op: op, token: ck.Value, csrf: csrfToken(ck.Value)}
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(s.csrf)) != 1 {
				http.Error(w, "the form expired; reload the page", http.StatusForbidden)
				return
			}
		}
		next(w, r, s)
	}
}

func (c *Console) toSignIn(w http.ResponseWriter, r *http.Request) {
	next := ""
	if r.Method == http.MethodGet {
		next = r.URL.RequestURI()
	}
	http.Redirect(w, r, base+"signin?next="+url.QueryEscape(next), http.StatusSeeOther)
}

func clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: base, MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// ctx is a backend call's context: the operator the gateway verified, as the gateway's
// JSON routes send it (the service credential rides on the connection).
func (c *Console) ctx(r *http.Request, s *session) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(r.Context(), c.o.Timeout)
	md := metadata.Pairs(authz.HeaderRole, authz.RoleAnonymous)
	if s != nil {
		md = metadata.Pairs(authz.HeaderRole, authz.RoleOperator, authz.HeaderOperator, s.op.ID, authz.HeaderSession, s.op.Session)
	}
	if c.o.ClientIP != nil {
		md.Set("x-lethe-client-ip", c.o.ClientIP(r))
	}
	return metadata.NewOutgoingContext(ctx, md), cancel
}

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	CSRF    string
	Signed  bool
	Flash   string
	Error   string
	Data    any
	Request *http.Request
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, s *session, name string, status int, p page) {
	t, ok := c.pages[name]
	if !ok {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	if s != nil {
		p.CSRF, p.Signed = s.csrf, true
	}
	if p.Flash == "" {
		p.Flash = flashes[r.URL.Query().Get("done")]
	}
	p.Request = r
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		c.o.Logger.Error("console template failed", "page", name, "err", err.Error())
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

var flashes = map[string]string{
	"extend": "The due date was extended; the member is told the reason.", "hold": "The legal hold is set.", "release": "The legal hold is released.",
	"cancel": "The request is cancelled.", "resend": "A new verification code was sent to the member.", "partner": "The partner is saved.",
	"purpose": "The purpose is added.",
}

// failure turns a backend error into what the operator reads (no internal detail), and
// sends an expired session back to sign-in.
func (c *Console) failure(w http.ResponseWriter, r *http.Request, err error) (string, bool) {
	st := status.Convert(err)
	switch st.Code() {
	case codes.Unauthenticated:
		clearCookie(w, r, sessionCookie)
		c.toSignIn(w, r)
		return "", true
	case codes.Internal, codes.Unknown, codes.DataLoss:
		c.o.Logger.Error("console backend call failed", "code", st.Code().String())
		return "Something went wrong on our side; try again.", false
	case codes.Unavailable, codes.DeadlineExceeded:
		return "A backend is not answering; try again in a moment.", false
	}
	return st.Message(), false
}

func (c *Console) signInForm(w http.ResponseWriter, r *http.Request) {
	c.renderSignIn(w, r, http.StatusOK, "")
}

func (c *Console) renderSignIn(w http.ResponseWriter, r *http.Request, code int, msg string) {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	pre := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: preCookie, Value: pre, Path: base, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: 900})
	c.render(w, r, nil, "signin", code, page{Title: "Sign in", Error: msg, Data: map[string]string{"Pre": pre, "Next": safeNext(r.FormValue("next"))}})
}

// safeNext keeps a post-sign-in redirect inside the console.
func safeNext(n string) string {
	if !strings.HasPrefix(n, base) || strings.HasPrefix(n, "//") || strings.ContainsAny(n, "\\\r\n") {
		return base + "queue"
	}
	return n
}

func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		c.renderSignIn(w, r, http.StatusBadRequest, "The form could not be read.")
		return
	}
	ck, err := r.Cookie(preCookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostForm.Get("pre"))) != 1 {
		c.renderSignIn(w, r, http.StatusForbidden, "The sign-in form expired; try again.")
		return
	}
	if c.o.AllowSignIn != nil && !c.o.AllowSignIn(r) {
		w.Header().Set("Retry-After", "60")
		c.renderSignIn(w, r, http.StatusTooManyRequests, "Too many attempts; wait a minute.")
		return
	}
	ctx, cancel := c.ctx(r, nil)
	defer cancel()
	res, err := c.identity.SignInOperator(ctx, &identityv1.SignInOperatorRequest{Email: strings.TrimSpace(r.PostForm.Get("email")),
		Password: r.PostForm.Get("password"), TotpCode: strings.TrimSpace(r.PostForm.Get("totp"))})
	if err != nil {
		msg := "Email, password or code is not correct."
		switch status.Code(err) {
		case codes.InvalidArgument:
			msg = "Enter your email, password and the 6-digit code from your authenticator."
		case codes.ResourceExhausted:
			msg = "Too many attempts; wait a minute."
		case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.Unknown:
			msg = "Sign-in is not available right now; try again."
		}
		c.renderSignIn(w, r, http.StatusUnauthorized, msg)
		return
	}
	exp := res.GetAccessTokenExpireTime().AsTime()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: res.GetAccessToken(), Path: base, Expires: exp, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	clearCookie(w, r, preCookie)
	http.Redirect(w, r, safeNext(r.PostForm.Get("next")), http.StatusSeeOther)
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request, s *session) {
	clearCookie(w, r, sessionCookie)
	http.Redirect(w, r, base+"signin", http.StatusSeeOther)
}

var errNoReason = errors.New("Give a reason (a case reference, 3 to 500 characters, no personal data).")

func reasonOf(r *http.Request) (string, error) {
	reason := strings.TrimSpace(r.PostForm.Get("reason"))
	if len(reason) < 3 || len(reason) > 500 {
		return "", errNoReason
	}
	return reason, nil
}
