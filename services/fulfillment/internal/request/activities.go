package request

import (
	"archive/zip"
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
	preferencesv1 "lethe.dev/gen/lethe/preferences/v1"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/storage"
)

// ErrPermanent is the error type of failures retrying cannot fix.
const ErrPermanent = "PERMANENT"

// permanent marks errors that retrying cannot fix (bad input, unknown member).
func permanent(err error) error {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.PermissionDenied:
		return temporal.NewNonRetryableApplicationError("permanent failure: "+status.Code(err).String(), ErrPermanent, nil)
	}
	return err
}

// Activities are the steps of the request workflows.
type Activities struct {
	DB          *storage.DB
	Identity    identityv1.IdentityServiceClient
	Preferences preferencesv1.PreferencesServiceClient
	Sharing     sharingv1.SharingServiceClient
	Subjects    map[string]subjectv1.DataSubjectServiceClient // by service name
	ArchiveDir  string
	SigningKey  ed25519.PrivateKey
	KeyID       string
	Now         func() time.Time
}

// RequestRef names a request and its member.
type RequestRef struct {
	RequestID string
	MemberID  string
}

func (r RequestRef) member() string { return "members/" + r.MemberID }

// SetStateInput records a state.
type SetStateInput struct {
	RequestID string
	State     string
}

// SetState records a request's state in the read model.
func (a *Activities) SetState(ctx context.Context, in SetStateInput) error {
	return SetState(ctx, a.DB, in.RequestID, in.State, a.Now())
}

// ProgressInput records progress.
type ProgressInput struct {
	RequestID string
	Steps     []Step
}

// SaveProgress stores the steps for GetPrivacyRequest.
func (a *Activities) SaveProgress(ctx context.Context, in ProgressInput) error {
	raw, _ := json.Marshal(in.Steps)
	_, err := a.DB.ExecContext(ctx, `UPDATE requests SET progress = $1 WHERE id = $2`, string(raw), in.RequestID)
	return err
}

// EscalationInput records an escalation level.
type EscalationInput struct {
	RequestID string
	Level     string
}

// RecordEscalation records an escalation (once per level); a breach also marks the
// request breached, so it shows in the operators' overdue list.
func (a *Activities) RecordEscalation(ctx context.Context, in EscalationInput) error {
	if _, err := a.DB.ExecContext(ctx, `INSERT INTO escalations (request_id, level, created_at) VALUES ($1, $2, $3) ON CONFLICT (request_id, level) DO NOTHING`,
		in.RequestID, in.Level, a.Now().UnixMicro()); err != nil {
		return err
	}
	if in.Level == "breach" || len(in.Level) > 13 && in.Level[:13] == "onward-breach" {
		if _, err := a.DB.ExecContext(ctx, `UPDATE requests SET breached = TRUE WHERE id = $1`, in.RequestID); err != nil {
			return err
		}
		activity.GetLogger(ctx).Warn("privacy request escalation", "request", in.RequestID, "level", in.Level)
	}
	return nil
}

// SendVerification asks identity to email the member a one-time code and records the
// challenge id.
func (a *Activities) SendVerification(ctx context.Context, in RequestRef) error {
	ch, err := a.Identity.SendVerificationCode(ctx, &identityv1.SendVerificationCodeRequest{Name: in.member(),
		Purpose: identityv1.VerificationPurpose_VERIFICATION_PURPOSE_PRIVACY_REQUEST, Reference: in.RequestID})
	if err != nil {
		return permanent(err)
	}
	_, err = a.DB.ExecContext(ctx, `UPDATE requests SET challenge_id = $1 WHERE id = $2`, ch.GetChallengeId(), in.RequestID)
	return err
}

// ExportInput exports one service's data.
type ExportInput struct {
	RequestID string
	MemberID  string
	Service   string
}

// ExportResult counts what was exported.
type ExportResult struct {
	Service string
	Records int64
}

// exportProgress is the heartbeat: the cursor to resume from and how long each file was
// when that cursor was reached, so a resumed attempt truncates partial writes.
type exportProgress struct {
	Cursor  string
	Sizes   map[string]int64
	Records int64
}

func (a *Activities) requestDir(requestID string) string {
	return filepath.Join(a.ArchiveDir, requestID)
}

// ExportService streams one service's data for the member into JSON-lines files (one
// per dataset) under the archive directory, heartbeating after every chunk. After a
// crash the next attempt resumes from the last heartbeat.
func (a *Activities) ExportService(ctx context.Context, in ExportInput) (ExportResult, error) {
	client, ok := a.Subjects[in.Service]
	if !ok {
		return ExportResult{}, temporal.NewNonRetryableApplicationError("unknown service", ErrPermanent, nil)
	}
	dir := filepath.Join(a.requestDir(in.RequestID), in.Service)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return ExportResult{}, err
	}
	prog := exportProgress{Sizes: map[string]int64{}}
	if activity.HasHeartbeatDetails(ctx) {
		if err := activity.GetHeartbeatDetails(ctx, &prog); err != nil {
			return ExportResult{}, err
		}
	}
	// Drop partial writes beyond the last acknowledged chunk; forget files not yet begun.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		size, known := prog.Sizes[e.Name()]
		if !known {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		} else if err := os.Truncate(filepath.Join(dir, e.Name()), size); err != nil {
			return ExportResult{}, err
		}
	}
	stream, err := client.ExportSubjectData(ctx, &subjectv1.ExportSubjectDataRequest{Subject: "members/" + in.MemberID, RequestId: in.RequestID, Cursor: prog.Cursor})
	if err != nil {
		return ExportResult{}, permanent(err)
	}
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return ExportResult{}, permanent(err)
		}
		name := chunk.GetDataset() + ".jsonl"
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return ExportResult{}, err
		}
		w := bufio.NewWriter(f)
		for _, rec := range chunk.GetRecords() {
			w.Write(rec)
			w.WriteByte('\n')
		}
		if err := w.Flush(); err != nil {
			f.Close()
			return ExportResult{}, err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return ExportResult{}, err
		}
		info, _ := f.Stat()
		f.Close()
		prog.Sizes[name] = info.Size()
		prog.Cursor = chunk.GetCursor()
		prog.Records += int64(len(chunk.GetRecords()))
		activity.RecordHeartbeat(ctx, prog)
	}
	return ExportResult{Service: in.Service, Records: prog.Records}, nil
}

// ArchiveInput builds the archive.
type ArchiveInput struct {
	RequestID string
	Services  []string
	ExpiresAt time.Time
}

// ArchiveResult describes the archive.
type ArchiveResult struct {
	Path    string
	Size    int64
	SHA256  string
	Records int64
}

// ManifestFile is one file of the archive.
type ManifestFile struct {
	Path          string `json:"path"`
	Records       int64  `json:"records"`
	SHA256        string `json:"sha256"`
	SchemaVersion int    `json:"schema_version"`
}

// Manifest describes an export archive.
type Manifest struct {
	RequestID string         `json:"request_id"`
	Created   time.Time      `json:"created"`
	Files     []ManifestFile `json:"files"`
}

const archiveReadme = `Your data, as held by each of our systems.

Each folder is one system; each .json file is one kind of data, as a JSON array of
records. manifest.json lists every file with its record count and SHA-256 checksum.
This archive contains personal data: store it safely.
`

// BuildArchive turns the exported JSON-lines files into one ZIP: a JSON array per
// service and dataset, manifest.json and README.txt. Files are streamed, so memory stays
// flat whatever the size.
func (a *Activities) BuildArchive(ctx context.Context, in ArchiveInput) (ArchiveResult, error) {
	root := a.requestDir(in.RequestID)
	path := filepath.Join(root, "export.zip")
	tmp := path + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return ArchiveResult{}, err
	}
	defer os.Remove(tmp)
	zw := zip.NewWriter(out)
	man := Manifest{RequestID: in.RequestID, Created: a.Now().UTC()}
	var total int64
	for _, svc := range in.Services {
		files, _ := filepath.Glob(filepath.Join(root, svc, "*.jsonl"))
		sort.Strings(files)
		for _, src := range files {
			name := svc + "/" + filepath.Base(src[:len(src)-len(".jsonl")]) + ".json"
			n, sum, err := writeJSONArray(zw, name, src)
			if err != nil {
				out.Close()
				return ArchiveResult{}, err
			}
			man.Files = append(man.Files, ManifestFile{Path: name, Records: n, SHA256: sum, SchemaVersion: 1})
			total += n
			activity.RecordHeartbeat(ctx, name)
		}
	}
	mw, _ := zw.Create("manifest.json")
	enc := json.NewEncoder(mw)
	enc.SetIndent("", "  ")
	if err := enc.Encode(man); err != nil {
		out.Close()
		return ArchiveResult{}, err
	}
	rw, _ := zw.Create("README.txt")
	io.WriteString(rw, archiveReadme)
	if err := zw.Close(); err != nil {
		out.Close()
		return ArchiveResult{}, err
	}
	if err := out.Close(); err != nil {
		return ArchiveResult{}, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return ArchiveResult{}, err
	}
	size, sum, err := fileDigest(path)
	if err != nil {
		return ArchiveResult{}, err
	}
	_, err = a.DB.ExecContext(ctx, `UPDATE requests SET archive_path = $1, archive_size = $2, archive_sha256 = $3, archive_expires_at = $4 WHERE id = $5`,
		path, size, sum, in.ExpiresAt.UnixMicro(), in.RequestID)
	return ArchiveResult{Path: path, Size: size, SHA256: sum, Records: total}, err
}

func writeJSONArray(zw *zip.Writer, name, src string) (int64, string, error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	w, err := zw.Create(name)
	if err != nil {
		return 0, "", err
	}
	h := sha256.New()
	mw := io.MultiWriter(w, h)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var n int64
	io.WriteString(mw, "[")
	for sc.Scan() {
		if n > 0 {
			io.WriteString(mw, ",\n")
		}
		mw.Write(sc.Bytes())
		n++
	}
	io.WriteString(mw, "]\n")
	return n, hex.EncodeToString(h.Sum(nil)), sc.Err()
}

func fileDigest(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return n, hex.EncodeToString(h.Sum(nil)), err
}

// DeleteArchive removes an expired archive and its working files.
func (a *Activities) DeleteArchive(ctx context.Context, in RequestRef) error {
	if err := os.RemoveAll(a.requestDir(in.RequestID)); err != nil {
		return err
	}
	_, err := a.DB.ExecContext(ctx, `UPDATE requests SET archive_path = '' WHERE id = $1`, in.RequestID)
	return err
}

// RevokeSessions ends every session of the member at once.
func (a *Activities) RevokeSessions(ctx context.Context, in RequestRef) error {
	_, err := a.Identity.RevokeAllSessions(ctx, &identityv1.RevokeAllSessionsRequest{Parent: in.member()})
	return permanent(err)
}

// StopMarketing unsubscribes the member from all marketing.
func (a *Activities) StopMarketing(ctx context.Context, in RequestRef) error {
	_, err := a.Preferences.StopAllMarketing(ctx, &preferencesv1.StopAllMarketingRequest{Name: in.member() + "/communicationPreferences",
		Source: preferencesv1.ConsentSource_CONSENT_SOURCE_PRIVACY_REQUEST, RequestId: "stop-" + in.RequestID})
	return permanent(err)
}

// BlockSharing stops all further sharing of the member's data.
func (a *Activities) BlockSharing(ctx context.Context, in RequestRef) error {
	_, err := a.Sharing.BlockSharing(ctx, &sharingv1.BlockSharingRequest{Member: in.member(), RequestId: in.RequestID})
	return permanent(err)
}

// EraseInput erases at one service.
type EraseInput struct {
	RequestRef
	Service string
}

// ServiceErasure is what one service reported.
type ServiceErasure struct {
	Service string
	Results []CategoryCount
}

// CategoryCount is one line of an erasure result.
type CategoryCount struct {
	Dataset, Category, Action, LegalBasis string
	Count                                 int64
}

// Total counts the records touched.
func (s ServiceErasure) Total() int64 {
	var n int64
	for _, r := range s.Results {
		n += r.Count
	}
	return n
}

// tombstone returns the request's tombstone id.
func (a *Activities) tombstone(ctx context.Context, requestID string) (string, error) {
	var t string
	err := a.DB.QueryRowContext(ctx, `SELECT tombstone_id FROM requests WHERE id = $1`, requestID).Scan(&t)
	return t, err
}

// EraseService erases the member at one service (idempotent there by request id).
func (a *Activities) EraseService(ctx context.Context, in EraseInput) (ServiceErasure, error) {
	t, err := a.tombstone(ctx, in.RequestID)
	if err != nil {
		return ServiceErasure{}, err
	}
	res, err := a.Subjects[in.Service].EraseSubjectData(ctx, &subjectv1.EraseSubjectDataRequest{Subject: in.member(), RequestId: in.RequestID, TombstoneId: t})
	if err != nil {
		return ServiceErasure{}, permanent(err)
	}
	out := ServiceErasure{Service: in.Service}
	for _, r := range res.GetResults() {
		out.Results = append(out.Results, CategoryCount{Dataset: r.GetDataset(), Category: r.GetCategory(), Action: r.GetAction().String(), LegalBasis: r.GetLegalBasis(), Count: r.GetCount()})
	}
	return out, nil
}

// Recipient is a processor to erase at, with its contractual acknowledgement deadline.
type Recipient struct {
	Partner     string
	AckDeadline time.Duration
}

// ErasureRecipients lists the processors that received the member's data.
func (a *Activities) ErasureRecipients(ctx context.Context, in RequestRef) ([]Recipient, error) {
	res, err := a.Sharing.ListErasureRecipients(ctx, &sharingv1.ListErasureRecipientsRequest{Member: in.member()})
	if err != nil {
		return nil, permanent(err)
	}
	out := make([]Recipient, 0, len(res.GetPartners()))
	for _, p := range res.GetPartners() {
		partner, err := a.Sharing.GetPartner(ctx, &sharingv1.GetPartnerRequest{Name: p})
		if err != nil {
			return nil, permanent(err)
		}
		out = append(out, Recipient{Partner: p, AckDeadline: partner.GetAckDeadline().AsDuration()})
	}
	return out, nil
}

// OnwardState is one processor's state.
type OnwardState struct {
	Acknowledged bool
	LastError    string
}

// SendOnward sends (or re-sends) the erasure to one processor.
func (a *Activities) SendOnward(ctx context.Context, in OnwardInput) (OnwardState, error) {
	o, err := a.Sharing.SendOnwardErasure(ctx, &sharingv1.SendOnwardErasureRequest{Member: "members/" + in.MemberID, Partner: in.Partner, RequestId: in.RequestID})
	if err != nil {
		return OnwardState{}, permanent(err)
	}
	return OnwardState{Acknowledged: o.GetState() == sharingv1.OnwardErasureState_ONWARD_ERASURE_STATE_ACKNOWLEDGED, LastError: o.GetLastError()}, nil
}

// QueueConfirmation queues the final confirmation message before identity is erased
// (after that, nobody could be told); identity delivers it before it shreds the member.
func (a *Activities) QueueConfirmation(ctx context.Context, in RequestRef) error {
	if _, err := a.Identity.NotifyMember(ctx, &identityv1.NotifyMemberRequest{Name: in.member(), Template: identityv1.MessageTemplate_MESSAGE_TEMPLATE_ERASURE_CONFIRMED,
		Reference: in.member() + "/privacyRequests/" + in.RequestID, RequestId: "confirm-" + in.RequestID}); err != nil {
		return permanent(err)
	}
	return Notify(ctx, a.DB, in.RequestID, "erasure_confirmation", "", a.Now())
}

// NotifyExportReady tells the member their archive can be downloaded.
func (a *Activities) NotifyExportReady(ctx context.Context, in RequestRef) error {
	if _, err := a.Identity.NotifyMember(ctx, &identityv1.NotifyMemberRequest{Name: in.member(), Template: identityv1.MessageTemplate_MESSAGE_TEMPLATE_EXPORT_READY,
		Reference: in.member() + "/privacyRequests/" + in.RequestID, RequestId: "ready-" + in.RequestID}); err != nil {
		return permanent(err)
	}
	return Notify(ctx, a.DB, in.RequestID, "export_ready", "", a.Now())
}

// VerifyErased asks every service what it still holds; anything without a legal basis
// fails the step loudly.
func (a *Activities) VerifyErased(ctx context.Context, in RequestRef) error {
	t, err := a.tombstone(ctx, in.RequestID)
	if err != nil {
		return err
	}
	var leftovers []string
	for _, svc := range ExportServices {
		rep, err := a.Subjects[svc].ReportSubjectData(ctx, &subjectv1.ReportSubjectDataRequest{Subject: in.member(), TombstoneId: t})
		if err != nil {
			return err
		}
		for _, h := range rep.GetHeld() {
			if h.GetLegalBasis() == "" {
				leftovers = append(leftovers, fmt.Sprintf("%s.%s=%d", svc, h.GetDataset(), h.GetCount()))
			}
		}
	}
	if len(leftovers) > 0 {
		activity.GetLogger(ctx).Error("erasure verification failed", "request", in.RequestID, "leftovers", leftovers)
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("data still held after erasure: %v", leftovers), "ERASURE_INCOMPLETE", nil)
	}
	return nil
}

// ReceiptInput signs a receipt.
type ReceiptInput struct {
	RequestRef
	Services []ServiceErasure
	Onward   []OnwardResult
}

// Receipt is the signed statement of an erasure: opaque ids, systems, actions, counts,
// processor acknowledgements and times — no personal data.
type Receipt struct {
	RequestID   string           `json:"request_id"`
	TombstoneID string           `json:"tombstone_id"`
	Completed   time.Time        `json:"completed"`
	Systems     []ServiceErasure `json:"systems"`
	Processors  []OnwardResult   `json:"processors"`
	KeyID       string           `json:"key_id"`
}

// SignReceipt signs the receipt with Ed25519. The member fetches it with the receipt
// token they were given when they filed the request (only its hash is stored).
func (a *Activities) SignReceipt(ctx context.Context, in ReceiptInput) error {
	t, err := a.tombstone(ctx, in.RequestID)
	if err != nil {
		return err
	}
	payload, _ := json.Marshal(Receipt{RequestID: in.RequestID, TombstoneID: t, Completed: a.Now().UTC(), Systems: in.Services, Processors: in.Onward, KeyID: a.KeyID})
	sig := ed25519.Sign(a.SigningKey, payload)
	// Signed once: a retried activity keeps the first receipt.
	_, err = a.DB.ExecContext(ctx, `UPDATE requests SET receipt_payload = $1, receipt_signature = $2 WHERE id = $3 AND receipt_payload IS NULL`, payload, sig, in.RequestID)
	return err
}
