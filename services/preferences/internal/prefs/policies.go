package prefs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.temporal.io/sdk/temporal"

	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	"lethe.dev/platform/errs"
	"lethe.dev/services/preferences/internal/policychange"
)

// Policy versions. Preferences owns them because what they decide is consent: a member's
// acceptance of a version is a consent record like any other choice (setting
// "policy/{policy}", value "accepted", the version as policy_version), exported and
// erased with the member's other choices, and a change that lowers protection is
// enforced by asking here (CheckPolicyConsent) where the processing happens.

var (
	policyIDRE  = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	versionIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$`)
	purposeRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
)

// acceptedValue is the consent record value of an acceptance.
const acceptedValue = "accepted"

func policySetting(policy string) string { return "policy/" + policy }

// PolicyMailer tells members about a policy change through identity, which alone holds
// their addresses: a page of members at a time (newest first, with when each signed
// up), and one templated email per member, keyed by requestID so a retry queues one
// message.
type PolicyMailer interface {
	MemberPage(ctx context.Context, pageToken string) (members []PageMember, next string, err error)
	MailPolicyChange(ctx context.Context, memberID, reference, detail, requestID string) error
}

// PageMember is one member of a page: the opaque id and when they signed up.
type PageMember struct {
	ID       string
	SignedUp time.Time
}

// PolicyNotices starts a version's change-notice workflow (policychange); starting it
// again joins the running one, or does nothing after it ended.
type PolicyNotices interface {
	StartPolicyNotice(ctx context.Context, policy, version string, effective time.Time) error
}

type policyVersion struct {
	policy, version, summary string
	effective, created       int64
	lowers                   bool
	purposes                 []string
	notified                 int64
	done                     bool
}

func (v policyVersion) name() string { return "policies/" + v.policy + "/versions/" + v.version }

func (v policyVersion) proto() *preferencesv1.PolicyVersion {
	return &preferencesv1.PolicyVersion{Name: v.name(), Summary: v.summary, EffectiveTime: ts(v.effective), LowersProtection: v.lowers,
		AffectedPurposes: v.purposes, CreateTime: ts(v.created), NotifiedCount: v.notified, NotificationComplete: v.done}
}

const policyCols = `policy_id, version_id, summary, effective_at, lowers_protection, affected_purposes, created_at, notified_count, notify_done`

func scanPolicy(row interface{ Scan(...any) error }) (policyVersion, error) {
	var v policyVersion
	var purposes string
	err := row.Scan(&v.policy, &v.version, &v.summary, &v.effective, &v.lowers, &purposes, &v.created, &v.notified, &v.done)
	_ = json.Unmarshal([]byte(purposes), &v.purposes)
	return v, err
}

func policyOf(parent, field string) (string, error) {
	id, ok := strings.CutPrefix(parent, "policies/")
	if !ok || !policyIDRE.MatchString(id) {
		return "", errs.Invalid(errs.FieldViolation{Field: field, Description: "must be policies/{policy} (lowercase letters, digits, '-')"})
	}
	return id, nil
}

// versionOf parses "policies/{policy}/versions/{version}".
func versionOf(name, field string) (string, string, error) {
	rest, ok := strings.CutPrefix(name, "policies/")
	p, v, ok2 := strings.Cut(rest, "/versions/")
	if !ok || !ok2 || !policyIDRE.MatchString(p) || !versionIDRE.MatchString(v) {
		return "", "", errs.Invalid(errs.FieldViolation{Field: field, Description: "must be policies/{policy}/versions/{version}"})
	}
	return p, v, nil
}

func (s *Server) policyVersion(ctx context.Context, policy, version string) (policyVersion, error) {
	v, err := scanPolicy(s.DB.QueryRowContext(ctx, `SELECT `+policyCols+` FROM policy_versions WHERE policy_id = $1 AND version_id = $2`, policy, version))
	if errors.Is(err, sql.ErrNoRows) {
		return v, errs.NotFoundf("POLICY_VERSION_NOT_FOUND", "policy version")
	}
	return v, err
}

// CreatePolicyVersion implements PreferencesService: publish a version and start its
// change-notice workflow (policychange.PolicyChangeNotice), which emails every member.
// A retry with the same content finds the same version and the same workflow.
func (s *Server) CreatePolicyVersion(ctx context.Context, req *preferencesv1.CreatePolicyVersionRequest) (*preferencesv1.PolicyVersion, error) {
	policy, err := policyOf(req.GetParent(), "parent")
	if err != nil {
		return nil, err
	}
	in := req.GetPolicyVersion()
	var v errs.Violations
	if !versionIDRE.MatchString(req.GetPolicyVersionId()) {
		v.Add("policy_version_id", "must be 1 to 63 letters, digits, '.' or '-', e.g. 2026-12-01")
	}
	if in == nil {
		v.Add("policy_version", "is required")
	}
	if n := utf8.RuneCountInString(in.GetSummary()); n == 0 || n > 500 {
		v.Add("policy_version.summary", "must be 1 to 500 characters")
	}
	if in.GetEffectiveTime() == nil || !in.GetEffectiveTime().IsValid() {
		v.Add("policy_version.effective_time", "is required")
	}
	purposes := slices.Clone(in.GetAffectedPurposes())
	slices.Sort(purposes)
	purposes = slices.Compact(purposes)
	for _, p := range purposes {
		if !purposeRE.MatchString(p) {
			v.Add("policy_version.affected_purposes", "each must be a purpose id (lowercase letters, digits, '_', '-')")
			break
		}
	}
	if in.GetLowersProtection() && len(purposes) == 0 {
		v.Add("policy_version.affected_purposes", "a change that lowers protection must name the purposes it affects")
	}
	if len(purposes) > 50 {
		v.Add("policy_version.affected_purposes", "at most 50")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if s.PolicyNotices == nil {
		return nil, errs.New(errs.FailedPrecondition, "TEMPORAL_DISABLED", "publishing a policy version emails every member through a Temporal workflow; this instance runs without Temporal")
	}
	if purposes == nil {
		purposes = []string{}
	}
	pj, _ := json.Marshal(purposes)
	want := policyVersion{policy: policy, version: req.GetPolicyVersionId(), summary: in.GetSummary(), effective: in.GetEffectiveTime().AsTime().UnixMicro(),
		lowers: in.GetLowersProtection(), purposes: purposes, created: micros(s.now())}
	_, err = s.DB.ExecContext(ctx, `INSERT INTO policy_versions (policy_id, version_id, summary, effective_at, lowers_protection, affected_purposes, created_at, notify_cursor, notified_count, notify_done)
		VALUES ($1, $2, $3, $4, $5, $6, $7, '', 0, FALSE) ON CONFLICT (policy_id, version_id) DO NOTHING`,
		want.policy, want.version, want.summary, want.effective, want.lowers, string(pj), want.created)
	if err != nil {
		return nil, err
	}
	got, err := s.policyVersion(ctx, policy, want.version)
	if err != nil {
		return nil, err
	}
	// A retry with the same content is the same version; different content is a conflict
	// (a published version is never rewritten: members may have accepted it).
	if got.summary != want.summary || got.effective != want.effective || got.lowers != want.lowers || !slices.Equal(got.purposes, want.purposes) {
		return nil, errs.New(errs.AlreadyExists, "POLICY_VERSION_EXISTS", "this version was already published with other content; publish a new version")
	}
	if !got.done {
		if err := s.PolicyNotices.StartPolicyNotice(ctx, policy, got.version, time.UnixMicro(got.effective)); err != nil {
			return nil, errs.Wrap(err, errs.Unavailable, "POLICY_NOTICE_START_FAILED", "could not start the change emails; retry the call")
		}
	}
	if s.Logger != nil {
		s.Logger.Info("policy version published", "policy", policy, "version", want.version, "lowers_protection", want.lowers)
	}
	return got.proto(), nil
}

// ListPolicyVersions implements PreferencesService.
func (s *Server) ListPolicyVersions(ctx context.Context, req *preferencesv1.ListPolicyVersionsRequest) (*preferencesv1.ListPolicyVersionsResponse, error) {
	policy, err := policyOf(req.GetParent(), "parent")
	if err != nil {
		return nil, err
	}
	vs, err := s.versions(ctx, `policy_id = $1`, policy)
	if err != nil {
		return nil, err
	}
	out := &preferencesv1.ListPolicyVersionsResponse{}
	for i := len(vs) - 1; i >= 0; i-- {
		out.PolicyVersions = append(out.PolicyVersions, vs[i].proto())
	}
	return out, nil
}

// versions lists versions matching where, oldest first.
func (s *Server) versions(ctx context.Context, where string, args ...any) ([]policyVersion, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT `+policyCols+` FROM policy_versions WHERE `+where+` ORDER BY created_at, version_id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []policyVersion
	for rows.Next() {
		v, err := scanPolicy(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// accepted returns the version of policy the member accepted that was published last
// (accepting a version accepts every earlier one), and when they accepted it.
func (s *Server) accepted(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, memberID, policy string) (version string, published, at int64, err error) {
	rows, err := q.QueryContext(ctx, `SELECT c.policy_version, c.created_at, v.created_at FROM consent_records c
		JOIN policy_versions v ON v.policy_id = $2 AND v.version_id = c.policy_version
		WHERE c.member_id = $1 AND c.setting = $3 AND c.value = $4`, memberID, policy, policySetting(policy), acceptedValue)
	if err != nil {
		return "", 0, 0, err
	}
	defer rows.Close()
	published = -1
	for rows.Next() {
		var ver string
		var when, pub int64
		if err := rows.Scan(&ver, &when, &pub); err != nil {
			return "", 0, 0, err
		}
		if pub > published || (pub == published && ver > version) {
			version, published, at = ver, pub, when
		}
	}
	return version, published, at, rows.Err()
}

func acceptanceName(name string) (memberID, policy string, err error) {
	memberID, policy, err = child(name, "policyAcceptances", "name")
	if err == nil && !policyIDRE.MatchString(policy) {
		err = errs.Invalid(errs.FieldViolation{Field: "name", Description: "must be members/{member}/policyAcceptances/{policy}"})
	}
	return memberID, policy, err
}

// AcceptPolicyVersion implements PreferencesService: one consent record per accepted
// version; accepting a version already accepted writes nothing.
func (s *Server) AcceptPolicyVersion(ctx context.Context, req *preferencesv1.AcceptPolicyVersionRequest) (*preferencesv1.PolicyAcceptance, error) {
	memberID, policy, err := acceptanceName(req.GetName())
	if err != nil {
		return nil, err
	}
	p, ver, err := versionOf(req.GetVersion(), "version")
	if err != nil {
		return nil, err
	}
	if p != policy {
		return nil, errs.Invalid(errs.FieldViolation{Field: "version", Description: "must be a version of the policy named in name"})
	}
	if _, err := s.policyVersion(ctx, policy, ver); err != nil {
		return nil, err
	}
	err = s.DB.InTx(ctx, func(tx *sql.Tx) error {
		if err := s.refuseErased(ctx, tx, memberID); err != nil {
			return err
		}
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM consent_records WHERE member_id = $1 AND setting = $2 AND value = $3 AND policy_version = $4`,
			memberID, policySetting(policy), acceptedValue, ver).Scan(&one)
		if err == nil {
			return nil // accepted before: idempotent
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		return s.consent(ctx, tx, memberID, policySetting(policy), acceptedValue, ver, preferencesv1.ConsentSource_CONSENT_SOURCE_POLICY_ACCEPTANCE, s.now())
	})
	if err != nil {
		return nil, err
	}
	return s.acceptance(ctx, memberID, policy)
}

// GetPolicyAcceptance implements PreferencesService.
func (s *Server) GetPolicyAcceptance(ctx context.Context, req *preferencesv1.GetPolicyAcceptanceRequest) (*preferencesv1.PolicyAcceptance, error) {
	memberID, policy, err := acceptanceName(req.GetName())
	if err != nil {
		return nil, err
	}
	return s.acceptance(ctx, memberID, policy)
}

func (s *Server) acceptance(ctx context.Context, memberID, policy string) (*preferencesv1.PolicyAcceptance, error) {
	vs, err := s.versions(ctx, `policy_id = $1`, policy)
	if err != nil {
		return nil, err
	}
	var newest int64 = -1
	if len(vs) > 0 {
		newest = vs[len(vs)-1].created
	}
	ver, published, at, err := s.acceptedOrSignedUp(ctx, memberID, policy, newest)
	if err != nil {
		return nil, err
	}
	out := &preferencesv1.PolicyAcceptance{Name: "members/" + memberID + "/policyAcceptances/" + policy}
	if ver != "" {
		out.AcceptedVersion, out.AcceptTime = "policies/"+policy+"/versions/"+ver, ts(at)
	}
	for _, v := range vs {
		out.CurrentVersion = v.name()
		if v.lowers && v.created > published {
			out.PendingVersions = append(out.PendingVersions, v.name())
		}
	}
	return out, nil
}

// CheckPolicyConsent implements PreferencesService: a purpose is refused for a member
// while a version that lowers protection for it is in effect and the member has not
// accepted it (or a later version of the same policy, or signed up after it was
// published). Before its effective date the previous terms apply.
func (s *Server) CheckPolicyConsent(ctx context.Context, req *preferencesv1.CheckPolicyConsentRequest) (*preferencesv1.CheckPolicyConsentResponse, error) {
	memberID, err := member(req.GetMember(), "", "member")
	if err != nil {
		return nil, err
	}
	if !purposeRE.MatchString(req.GetPurpose()) {
		return nil, errs.Invalid(errs.FieldViolation{Field: "purpose", Description: "must be a purpose id"})
	}
	missing, err := s.missingVersions(ctx, memberID, req.GetPurpose())
	if err != nil {
		return nil, err
	}
	return &preferencesv1.CheckPolicyConsentResponse{Allowed: len(missing) == 0, MissingVersions: missing}, nil
}

// missingVersions names the versions lowering protection for any of purposes that are
// in effect and that the member has not accepted (nor a later version of their policy).
func (s *Server) missingVersions(ctx context.Context, memberID string, purposes ...string) ([]string, error) {
	vs, err := s.versions(ctx, `lowers_protection = TRUE AND effective_at <= $1`, micros(s.now()))
	if err != nil {
		return nil, err
	}
	var missing []string
	published := map[string]int64{}
	for _, v := range vs {
		if !slices.ContainsFunc(purposes, func(p string) bool { return slices.Contains(v.purposes, p) }) {
			continue
		}
		pub, ok := published[v.policy]
		if !ok || v.created > pub {
			if _, pub, _, err = s.acceptedOrSignedUp(ctx, memberID, v.policy, v.created); err != nil {
				return nil, err
			}
			published[v.policy] = pub
		}
		if v.created > pub {
			missing = append(missing, v.name())
		}
	}
	return missing, nil
}

// MarketingPurposes are the purposes a policy version names to affect marketing mail of
// a topic: "marketing" (every topic) and "marketing_{topic}", e.g.
// "marketing_partner_offers".
func MarketingPurposes(t preferencesv1.Topic) []string {
	return []string{"marketing", "marketing_" + strings.ToLower(strings.TrimPrefix(t.String(), "TOPIC_"))}
}

// marketingPolicyRefusal returns POLICY_CONSENT_REQUIRED while a version lowering
// protection for marketing of topic t is in effect and not accepted by the member.
func (s *Server) marketingPolicyRefusal(ctx context.Context, memberID string, t preferencesv1.Topic) (string, error) {
	missing, err := s.missingVersions(ctx, memberID, MarketingPurposes(t)...)
	if err != nil || len(missing) == 0 {
		return "", err
	}
	return "POLICY_CONSENT_REQUIRED", nil
}

// NotifyPolicyPage emails the next page of members about a version and advances the
// version's cursor: the change-notice workflow's activity. Members who signed up after
// the version was published are skipped (they accepted it, or a later version, at
// sign-up). The cursor is advanced by compare-and-set and each email is keyed by
// version and member, so a retried page, two workers running one at once, or a crash
// between a page and its cursor update queue every email exactly once.
func (s *Server) NotifyPolicyPage(ctx context.Context, policy, version string) (int, bool, error) {
	v, err := s.policyVersion(ctx, policy, version)
	if errs.ReasonOf(err) == "POLICY_VERSION_NOT_FOUND" {
		return 0, false, temporal.NewNonRetryableApplicationError("policy version no longer exists", policychange.ErrVersionGone, nil)
	}
	if err != nil {
		return 0, false, err
	}
	if v.done {
		return 0, true, nil
	}
	if s.PolicyMailer == nil {
		return 0, false, errors.New("prefs: no member list or mailer configured (IDENTITY_ADDRESS)")
	}
	var cursor string
	if err := s.DB.QueryRowContext(ctx, `SELECT notify_cursor FROM policy_versions WHERE policy_id = $1 AND version_id = $2`, policy, version).Scan(&cursor); err != nil {
		return 0, false, err
	}
	members, next, err := s.PolicyMailer.MemberPage(ctx, cursor)
	if err != nil {
		return 0, false, err
	}
	detail := policyDetail(v)
	sent := 0
	for _, m := range members {
		if micros(m.SignedUp) > v.created {
			continue // the version predates them
		}
		if err := s.PolicyMailer.MailPolicyChange(ctx, m.ID, v.name(), detail, "policy-change/"+v.policy+"/"+v.version+"/"+m.ID); err != nil {
			return 0, false, err
		}
		sent++
	}
	res, err := s.DB.ExecContext(ctx, `UPDATE policy_versions SET notify_cursor = $1, notified_count = notified_count + $2, notify_done = $3
		WHERE policy_id = $4 AND version_id = $5 AND notify_cursor = $6 AND notify_done = FALSE`, next, sent, next == "", policy, version, cursor)
	if err != nil {
		return 0, false, err
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		sent = 0 // another attempt recorded this page first
	}
	return sent, next == "", nil
}

// ResumePolicyNotices (re)starts the workflow of every version whose emails have not
// all gone out: a publish whose workflow start failed and was never retried, or a
// version published before its workflow existed. Starting is idempotent, so a running
// workflow is joined and nothing is mailed twice.
func (s *Server) ResumePolicyNotices(ctx context.Context) error {
	if s.PolicyNotices == nil {
		return nil
	}
	vs, err := s.versions(ctx, `notify_done = FALSE`)
	if err != nil {
		return err
	}
	for _, v := range vs {
		if err := s.PolicyNotices.StartPolicyNotice(ctx, v.policy, v.version, time.UnixMicro(v.effective)); err != nil {
			return err
		}
	}
	return nil
}

// policyDetail is the email text of a version: no member data, only the policy's.
func policyDetail(v policyVersion) string {
	var b strings.Builder
	b.WriteString("Version " + v.version + " of the " + v.policy + " privacy policy takes effect on " + time.UnixMicro(v.effective).UTC().Format("2 January 2006") + ".\n\nWhat changes: " + v.summary)
	if v.lowers {
		b.WriteString("\n\nThis change gives your data less protection for: " + strings.Join(v.purposes, ", ") +
			". We will not use your data for these purposes under the new terms unless you agree: to agree, accept version " + v.version +
			" in your privacy settings (policy acceptances). Until then nothing changes for you.")
	}
	return b.String()
}
