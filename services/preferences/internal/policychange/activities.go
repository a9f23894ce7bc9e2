package policychange

import "context"

// Versions is preferences' store of policy versions (internal/prefs owns the table).
type Versions interface {
	// NotifyPolicyPage emails the next page of members about the version and advances
	// its cursor; safe to repeat (each email is keyed by version and member).
	NotifyPolicyPage(ctx context.Context, policy, version string) (notified int, done bool, err error)
}

// Activities run a notice's steps.
type Activities struct {
	Versions Versions
}

// NotifyPage emails one page of members about the version.
func (a *Activities) NotifyPage(ctx context.Context, in PageInput) (PageResult, error) {
	n, done, err := a.Versions.NotifyPolicyPage(ctx, in.Policy, in.Version)
	return PageResult{Notified: n, Done: done}, err
}
