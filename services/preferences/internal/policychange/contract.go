// Package policychange is the policy-version change notice workflow: when operators
// publish a version of a privacy policy, every member who signed up before it is emailed
// (through identity, which alone holds addresses) a page of members at a time, and the
// workflow then waits for the version's effective date, from which a change that lowers
// protection is enforced (prefs.CheckPolicyConsent reads the date; the timer here marks
// the version's state, it never opens or closes anything by itself).
package policychange

import "time"

// TaskQueue is preferences' task queue.
const TaskQueue = "lethe-preferences"

// StateQuery returns the workflow's state: StateNotifying, StateAnnounced or StateInEffect.
const StateQuery = "state"

// States the StateQuery answers.
const (
	StateNotifying = "notifying" // emails are going out
	StateAnnounced = "announced" // every member was told; the effective date has not come
	StateInEffect  = "in-effect" // the effective date has come
)

// ErrVersionGone is the error type of a version whose row no longer exists: retrying
// cannot help.
const ErrVersionGone = "POLICY_VERSION_GONE"

// PagesPerRun bounds one run's history: after this many pages of members the workflow
// continues as new (the page cursor is kept with the version in preferences' database,
// so nothing is repeated and nothing is skipped).
const PagesPerRun = 500

// WorkflowID is the id of the notice workflow of version of policy: publishing the same
// version again finds this workflow rather than starting a second one.
func WorkflowID(policy, version string) string { return "policy-change/" + policy + "/" + version }

// Input starts a version's notice. Only opaque ids and times cross into Temporal: the
// policy and version ids, the effective date, and how many members earlier runs emailed.
type Input struct {
	Policy        string
	Version       string
	EffectiveTime time.Time
	// NotifiedBefore is the count carried over continue-as-new.
	NotifiedBefore int
}

// Result is how the notice ended: how many members were emailed (by this workflow's
// runs; a page mailed by a run whose result was lost is counted once, in the database).
type Result struct {
	Notified int
}

// PageInput names the version whose next page of members is emailed.
type PageInput struct {
	Policy  string
	Version string
}

// PageResult is one page of members emailed: a count, never the members.
type PageResult struct {
	Notified int
	Done     bool // no more members to email
}
