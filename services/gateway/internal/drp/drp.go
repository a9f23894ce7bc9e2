// Package drp serves the Data Rights Protocol v1.0 endpoints under /drp: the HTTP shape
// of the protocol (text/plain signed bodies, bearer tokens, Status objects, error bodies
// {"code","message","fatal"}). Verification, replay protection and filing happen in
// fulfillment's DataRightsService, which this package calls over gRPC.
package drp

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
)

// Handler serves /drp.
type Handler struct {
	DataRights fulfillmentv1.DataRightsServiceClient
	// Downloads serves /v1/downloads/{id} (the gateway's proxy to fulfillment's download
	// servers); results_url links are served through it.
	Downloads http.Handler
	Logger    *slog.Logger
	Timeout   time.Duration
	MaxBody   int64
	// Allow rate-limits the public verification form per client IP.
	Allow func(r *http.Request) bool
	// RedirectHosts are the only hosts a verification's redirect_to may name (https
	// only). Any other target is ignored and the Status object is answered instead, so
	// the confirmation page cannot be used as an open redirect.
	RedirectHosts []string
}

// redirectTarget returns redirect_to when it is an https URL on an allowed host.
func (h *Handler) redirectTarget(redirect string) (string, bool) {
	u, err := url.Parse(redirect)
	if redirect == "" || err != nil || u.Scheme != "https" || u.User != nil || u.Host == "" {
		return "", false
	}
	for _, host := range h.RedirectHosts {
		if strings.EqualFold(u.Host, host) {
			return u.String(), true
		}
	}
	return "", false
}

// Register adds the DRP routes to mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /drp/v1/agent/{agent}", h.issueToken)
	mux.HandleFunc("GET /drp/v1/agent/{agent}", h.checkToken)
	mux.HandleFunc("POST /drp/v1/data-rights-request", h.submit)
	mux.HandleFunc("POST /drp/v1/data-rights-request/", h.submit)
	mux.HandleFunc("GET /drp/v1/data-rights-request/{id}", h.get)
	mux.HandleFunc("DELETE /drp/v1/data-rights-request/{id}", h.revoke)
	mux.HandleFunc("GET /drp/v1/results/{id}", h.results)
	mux.HandleFunc("GET /drp/verify/{id}", h.verifyForm)
	mux.HandleFunc("POST /drp/verify/{id}", h.verify)
	mux.HandleFunc("/drp/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such DRP endpoint", false)
	})
}

func (h *Handler) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.Timeout)
}

// body reads a signed text/plain body.
func (h *Handler) body(w http.ResponseWriter, r *http.Request) (string, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.MaxBody))
	if err != nil {
		return "", false
	}
	return string(b), true
}

func bearer(r *http.Request) string {
	t, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return strings.TrimSpace(t)
}

// writeError writes the protocol's error body; code is the HTTP status as a string.
func writeError(w http.ResponseWriter, httpStatus int, msg string, fatal bool) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	out := map[string]any{"code": strconv.Itoa(httpStatus), "message": msg}
	if fatal {
		out["fatal"] = true
	}
	_ = json.NewEncoder(w).Encode(out)
}

// writeRPCError maps a DataRightsService error onto the protocol's error body.
func (h *Handler) writeRPCError(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	fatal := false
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetMetadata()["fatal"] == "true" {
			fatal = true
		}
	}
	msg := st.Message()
	switch st.Code() {
	case codes.PermissionDenied:
		writeError(w, http.StatusForbidden, msg, fatal)
	case codes.InvalidArgument:
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
				v := br.GetFieldViolations()[0]
				msg = v.GetField() + " " + v.GetDescription()
			}
		}
		writeError(w, http.StatusBadRequest, msg, true)
	case codes.FailedPrecondition:
		writeError(w, http.StatusConflict, msg, fatal)
	case codes.NotFound:
		writeError(w, http.StatusNotFound, msg, false)
	case codes.Unavailable, codes.DeadlineExceeded:
		writeError(w, http.StatusServiceUnavailable, "the service is unavailable; retry", false)
	default:
		h.Logger.Warn("DRP request failed", "code", st.Code().String())
		writeError(w, http.StatusInternalServerError, "internal error", false)
	}
}

func writeJSON(w http.ResponseWriter, m proto.Message) {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal error", false)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// issueToken is POST /v1/agent/{agent-id}: any failure is 403 with an empty body.
func (h *Handler) issueToken(w http.ResponseWriter, r *http.Request) {
	body, ok := h.body(w, r)
	if !ok {
		w.WriteHeader(http.StatusForbidden)
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	res, err := h.DataRights.IssueAgentToken(ctx, &fulfillmentv1.IssueAgentTokenRequest{AgentId: r.PathValue("agent"), SignedBody: body})
	if err != nil {
		if c := status.Code(err); c != codes.PermissionDenied {
			h.Logger.Warn("DRP agent token failed", "code", c.String())
		}
		w.WriteHeader(http.StatusForbidden)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]string{"agent-id": res.GetAgentId(), "token": res.GetToken()})
}

// checkToken is GET /v1/agent/{agent-id}.
func (h *Handler) checkToken(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	if _, err := h.DataRights.CheckAgentToken(ctx, &fulfillmentv1.CheckAgentTokenRequest{AgentId: r.PathValue("agent"), Token: bearer(r)}); err != nil {
		h.writeRPCError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, "{}")
}

func (h *Handler) submit(w http.ResponseWriter, r *http.Request) {
	body, ok := h.body(w, r)
	if !ok {
		writeError(w, http.StatusRequestEntityTooLarge, "the body is too large", true)
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	st, err := h.DataRights.SubmitDataRightsRequest(ctx, &fulfillmentv1.SubmitDataRightsRequestRequest{Token: bearer(r), SignedBody: body})
	if err != nil {
		h.writeRPCError(w, err)
		return
	}
	writeJSON(w, st)
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := h.ctx(r)
	defer cancel()
	st, err := h.DataRights.GetDataRightsStatus(ctx, &fulfillmentv1.GetDataRightsStatusRequest{Token: bearer(r), RequestId: r.PathValue("id")})
	if err != nil {
		h.writeRPCError(w, err)
		return
	}
	writeJSON(w, st)
}

func (h *Handler) revoke(w http.ResponseWriter, r *http.Request) {
	body, ok := h.body(w, r)
	if !ok {
		writeError(w, http.StatusRequestEntityTooLarge, "the body is too large", true)
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	st, err := h.DataRights.RevokeDataRightsRequest(ctx, &fulfillmentv1.RevokeDataRightsRequestRequest{Token: bearer(r), RequestId: r.PathValue("id"), SignedBody: body})
	if err != nil {
		h.writeRPCError(w, err)
		return
	}
	writeJSON(w, st)
}

// results serves an access request's results through the signed, expiring link
// fulfillment issued (the same signature as /v1/downloads).
func (h *Handler) results(w http.ResponseWriter, r *http.Request) {
	if h.Downloads == nil {
		writeError(w, http.StatusNotFound, "no results here", false)
		return
	}
	out := r.Clone(r.Context())
	out.URL.Path, out.URL.RawPath = "/v1/downloads/"+r.PathValue("id"), ""
	out.Header.Del("Authorization")
	h.Downloads.ServeHTTP(w, out)
}

var verifyPage = template.Must(template.New("verify").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Confirm your request</title></head>
<body><h1>Confirm your privacy request</h1>
<p>An authorized agent sent a privacy request for your account. We emailed you a 6-digit code; enter it to confirm.</p>
<form method="post"><input name="code" inputmode="numeric" autocomplete="one-time-code" maxlength="6" required>
<input type="hidden" name="redirect_to" value="{{.Redirect}}"><button type="submit">Confirm</button></form>
{{if .Failed}}<p role="alert">That code is not correct or has expired.</p>{{end}}</body></html>`))

func (h *Handler) verifyForm(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = verifyPage.Execute(w, map[string]any{"Redirect": r.URL.Query().Get("redirect_to")})
}

// verify takes the member's code (form or JSON {"code"}), then redirects to the agent's
// redirect_to when given, or answers with the Status object.
func (h *Handler) verify(w http.ResponseWriter, r *http.Request) {
	if h.Allow != nil && !h.Allow(r) {
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusTooManyRequests, "too many attempts; slow down", false)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	var code, redirect string
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var in struct {
			Code       string `json:"code"`
			RedirectTo string `json:"redirect_to"`
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			writeError(w, http.StatusBadRequest, "the body must be JSON with a code", false)
			return
		}
		code, redirect = in.Code, in.RedirectTo
	} else {
		code, redirect = r.PostFormValue("code"), r.PostFormValue("redirect_to")
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	st, err := h.DataRights.VerifyDataRightsRequest(ctx, &fulfillmentv1.VerifyDataRightsRequestRequest{RequestId: r.PathValue("id"), Code: code})
	if err != nil {
		if strings.Contains(r.Header.Get("Accept"), "text/html") {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusBadRequest)
			_ = verifyPage.Execute(w, map[string]any{"Redirect": redirect, "Failed": true})
			return
		}
		h.writeRPCError(w, err)
		return
	}
	if target, ok := h.redirectTarget(redirect); ok {
		http.Redirect(w, r, target, http.StatusSeeOther)
		return
	}
	writeJSON(w, st)
}

// ErrNoBackend is returned when the handler has no DataRightsService client.
var ErrNoBackend = errors.New("drp: no DataRightsService client")
