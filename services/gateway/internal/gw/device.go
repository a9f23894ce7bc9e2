package gw

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"google.golang.org/grpc/status"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	"lethe.dev/platform/ids"
)

// Global Privacy Control for signed-out visitors. A device is named by the gateway's
// device cookie (or, for clients without cookies, the X-Lethe-Device header); a Sec-GPC: 1
// from a signed-out visitor is recorded against it in preferences (as a hash), and the
// member who signs in on the device gets the opt-out with a consent record.
const (
	DeviceCookie = "lethe_device"
	DeviceHeader = "X-Lethe-Device"
	// deviceCookieAge is how long the browser keeps the device cookie.
	deviceCookieAge = 400 * 24 * time.Hour
)

var devicePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{16,128}$`)

// deviceKey carries a signed-out request's device and signal to the sign-in response.
type deviceKey struct{}

type deviceSignal struct {
	ID  string
	GPC bool
}

// deviceID is the request's device id, or "" when it has none (or a malformed one).
func deviceID(r *http.Request) string {
	id := r.Header.Get(DeviceHeader)
	if id == "" {
		if c, err := r.Cookie(DeviceCookie); err == nil {
			id = c.Value
		}
	}
	if !devicePattern.MatchString(id) {
		return ""
	}
	return id
}

// recordDeviceGPC records a signed-out visitor's signal against their device, giving the
// browser a device cookie when it has none, and returns the device id. The call is made
// before the request is served so a sign-in in the same request finds it; a failure is
// logged without personal data and the request goes on (the sign-in still carries the
// signal itself).
func (g *gateway) recordDeviceGPC(w http.ResponseWriter, dev string) string {
	if dev == "" {
		dev = ids.New() + ids.New()
		http.SetCookie(w, &http.Cookie{Name: DeviceCookie, Value: dev, Path: "/", MaxAge: int(deviceCookieAge.Seconds()),
			HttpOnly: true, SameSite: http.SameSiteLaxMode})
	}
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // a service call: none of the caller's metadata
	defer cancel()
	if _, err := g.prefs.RecordDeviceGlobalPrivacyControl(cctx, &preferencesv1.RecordDeviceGlobalPrivacyControlRequest{DeviceId: dev}); err != nil {
		g.opts.Logger.Warn("recording a device GPC signal failed", "code", status.Code(err).String())
	}
	return dev
}

// applyDeviceGPC applies the signal of the device a member just signed in on (or sent with
// the sign-in) to that member. Operators' sign-ins name no member and are skipped.
func applyDeviceGPC(ctx context.Context, logger *slog.Logger, prefs preferencesv1.PreferencesServiceClient, res *identityv1.SignInResponse) {
	d, _ := ctx.Value(deviceKey{}).(deviceSignal)
	if d.ID == "" && !d.GPC {
		return
	}
	rest, ok := strings.CutPrefix(res.GetSession().GetName(), "members/")
	member, _, ok2 := strings.Cut(rest, "/sessions/")
	if !ok || !ok2 || !ids.Valid(member) {
		return
	}
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // a service call: none of the caller's metadata
	defer cancel()
	if _, err := prefs.ApplyDeviceGlobalPrivacyControl(cctx, &preferencesv1.ApplyDeviceGlobalPrivacyControlRequest{
		Name: "members/" + member + "/adPreferences", DeviceId: d.ID, Signal: d.GPC}); err != nil {
		logger.Warn("applying a device GPC signal at sign-in failed", "code", status.Code(err).String())
	}
}
