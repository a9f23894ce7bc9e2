package drp

import "testing"

func TestRedirectTargetOnlyAllowedHTTPSHosts(t *testing.T) {
	h := &Handler{RedirectHosts: []string{"agent.example", "app.agent.example:8443"}}
	for _, c := range []struct {
		in string
		ok bool
	}{
		{"https://agent.example/done?id=1", true},
		{"https://AGENT.example/done", true},
		{"https://app.agent.example:8443/x", true},
		{"http://agent.example/done", false},           // not https
		{"https://evil.example/", false},               // host not allowed
		{"https://agent.example.evil.example/", false}, // suffix trick
		{"https://user@agent.example/", false},         // userinfo
		{"//agent.example/", false},                    // scheme-relative
		{"javascript:alert(1)", false},
		{"", false},
		{"https://app.agent.example/x", false}, // allowed only with its port
	} {
		if _, ok := h.redirectTarget(c.in); ok != c.ok {
			t.Errorf("redirectTarget(%q) ok = %v, want %v", c.in, ok, c.ok)
		}
	}
	if _, ok := (&Handler{}).redirectTarget("https://agent.example/"); ok {
		t.Error("with no allowed hosts, no redirect may be followed")
	}
}
