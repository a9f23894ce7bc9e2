package gw

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
)

// downloadProxy forwards /v1/downloads/ to fulfillment's download servers, taking the
// replicas in turn. Downloads are GETs without a body, so a replica that refuses the
// connection (down, restarting) is skipped and the next one tried; any replica can serve
// any link because the archive bucket and the link keyset are shared.
func downloadProxy(targets []*url.URL) http.Handler {
	b := &balancer{targets: targets, rt: http.DefaultTransport}
	return &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(targets[0]) }, // the balancer picks the host
		Transport: b,
	}
}

type balancer struct {
	targets []*url.URL
	next    atomic.Uint64
	rt      http.RoundTripper
}

func (b *balancer) RoundTrip(req *http.Request) (*http.Response, error) {
	start := b.next.Add(1)
	var err error
	for i := range b.targets {
		t := b.targets[(start+uint64(i))%uint64(len(b.targets))]
		r := req.Clone(req.Context())
		r.URL.Scheme, r.URL.Host, r.Host = t.Scheme, t.Host, t.Host
		var resp *http.Response
		if resp, err = b.rt.RoundTrip(r); err == nil {
			return resp, nil
		}
		if req.Context().Err() != nil || req.Body != nil && req.Body != http.NoBody {
			break
		}
	}
	return nil, err
}
