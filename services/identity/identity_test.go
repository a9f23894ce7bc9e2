package identity_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tink-crypto/tink-go/v2/jwt"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	identityv1 "lethe.dev/gen/lethe/identity/v1"
	subjectv1 "lethe.dev/gen/lethe/subject/v1"
	"lethe.dev/platform/app"
	"lethe.dev/platform/grpcserver/grpctest"
	"lethe.dev/platform/storage/storagetest"
	"lethe.dev/services/identity"
)

type harness struct {
	svc     *identity.Service
	client  identityv1.IdentityServiceClient
	subject subjectv1.DataSubjectServiceClient
	dir     string
	dbURL   string
}

// start runs identity on a real loopback gRPC server against dbURL.
func start(t testing.TB, dbURL string) *harness {
	t.Helper()
	dir := t.TempDir()
	cfg := identity.Config{
		ListenAddr: "127.0.0.1:0", DatabaseURL: dbURL, DataDir: dir,
		KEKURI: "file:" + filepath.Join(dir, "kek.json"), KeyRotation: 24 * time.Hour,
	}
	svc, err := identity.New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	conn := grpctest.Dial(t, svc.Register)
	return &harness{svc: svc, client: identityv1.NewIdentityServiceClient(conn), subject: subjectv1.NewDataSubjectServiceClient(conn), dir: dir, dbURL: dbURL}
}

var _ app.Service = (*identity.Service)(nil)

func engines(t *testing.T, fn func(t *testing.T, h *harness)) {
	for name, url := range storagetest.URLs(t) {
		t.Run(name, func(t *testing.T) { fn(t, start(t, url)) })
	}
}

func ada() *identityv1.Member {
	return &identityv1.Member{
		FullName: "Ada Lovelace-Byron", Email: "Ada.Lovelace@Example.com", PhoneNumber: "+442071234567",
		BirthDate: "1990-12-10", PaymentMethodRef: "pm_card_visa_4242xyz",
		PostalAddress: &identityv1.PostalAddress{RegionCode: "GB", PostalCode: "W1A 1AA", Locality: "Marylebone", AddressLines: []string{"12 Analytical Engine Row"}},
	}
}

func create(t testing.TB, h *harness, m *identityv1.Member, reqID string) *identityv1.Member {
	t.Helper()
	out, err := h.client.CreateMember(context.Background(), &identityv1.CreateMemberRequest{Member: m, Password: "correct horse battery", RequestId: reqID})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return out
}

// reasonAndFields returns a status's ErrorInfo reason and its field violations' fields.
func reasonAndFields(err error) (codes.Code, string, []string) {
	s := status.Convert(err)
	var reason string
	var fields []string
	for _, d := range s.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return s.Code(), reason, fields
}

func TestMemberLifecycle(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		m := create(t, h, ada(), "signup-1")
		if m.GetEmail() != "ada.lovelace@example.com" || m.GetState() != identityv1.MemberState_MEMBER_STATE_ACTIVE {
			t.Fatalf("created %v", m)
		}
		if again := create(t, h, ada(), "signup-1"); again.GetName() != m.GetName() {
			t.Fatalf("retry with the same request id made a second member")
		}
		dup := ada()
		dup.Email = " ADA.LOVELACE@example.com " // same after normalization
		// A taken address gets an answer shaped like a sign-up (no EMAIL_TAKEN to
		// enumerate accounts with); the decoy member exists nowhere, and the owner is mailed.
		decoy, err := h.client.CreateMember(ctx, &identityv1.CreateMemberRequest{Member: dup, Password: "another long password", RequestId: "signup-2"})
		if err != nil || decoy.GetName() == m.GetName() || decoy.GetState() != m.GetState() {
			t.Fatalf("duplicate sign-up: %v %v", decoy, err)
		}
		if again, _ := h.client.CreateMember(ctx, &identityv1.CreateMemberRequest{Member: dup, Password: "another long password", RequestId: "signup-2"}); again.GetName() != decoy.GetName() {
			t.Fatalf("a retried duplicate sign-up answered another id: %v vs %v", again.GetName(), decoy.GetName())
		}
		if _, err := h.client.GetMember(ctx, &identityv1.GetMemberRequest{Name: decoy.GetName()}); status.Code(err) != codes.NotFound {
			t.Fatalf("the decoy member exists: %v", err)
		}
		if _, err := h.svc.Domain.DeliverPending(ctx, 100); err != nil {
			t.Fatal(err)
		}
		if box, _ := os.ReadFile(filepath.Join(h.dir, "mailbox.jsonl")); strings.Count(string(box), `"kind":"signup_attempt"`) != 1 {
			t.Fatalf("the owner was not told exactly once: %s", box)
		}
		got, err := h.client.LookupMember(ctx, &identityv1.LookupMemberRequest{Email: "ada.lovelace@EXAMPLE.com"})
		if err != nil || got.GetName() != m.GetName() {
			t.Fatalf("lookup: %v %v", got, err)
		}
		upd, err := h.client.UpdateMember(ctx, &identityv1.UpdateMemberRequest{
			Member:     &identityv1.Member{Name: m.GetName(), PhoneNumber: "+14155550100", FullName: "ignored", Etag: m.GetEtag()},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"phone_number"}},
		})
		if err != nil || upd.GetPhoneNumber() != "+14155550100" || upd.GetFullName() != "Ada Lovelace-Byron" || upd.GetEtag() == m.GetEtag() {
			t.Fatalf("update: %v %v", upd, err)
		}
		_, err = h.client.UpdateMember(ctx, &identityv1.UpdateMemberRequest{
			Member: &identityv1.Member{Name: m.GetName(), FullName: "X", Etag: m.GetEtag()}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"full_name"}},
		})
		if code, reason, _ := reasonAndFields(err); code != codes.Aborted || reason != "ETAG_MISMATCH" {
			t.Fatalf("stale etag: %v %v", code, reason)
		}
		_, err = h.client.UpdateMember(ctx, &identityv1.UpdateMemberRequest{
			Member: &identityv1.Member{Name: m.GetName()}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"state"}},
		})
		if code, _, fields := reasonAndFields(err); code != codes.InvalidArgument || len(fields) == 0 || fields[0] != "update_mask" {
			t.Fatalf("read-only mask path: %v %v", code, fields)
		}
		for i := range 3 {
			x := ada()
			x.Email = "member" + string(rune('a'+i)) + "@example.com"
			create(t, h, x, "")
		}
		var names []string
		token := ""
		for {
			page, err := h.client.ListMembers(ctx, &identityv1.ListMembersRequest{PageSize: 2, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range page.GetMembers() {
				names = append(names, x.GetName())
			}
			if token = page.GetNextPageToken(); token == "" {
				break
			}
		}
		if len(names) != 4 || names[3] != m.GetName() {
			t.Fatalf("paged listing = %v; want 4 members, oldest (%s) last", names, m.GetName())
		}
	})
}

func TestBadInputIsRejectedAndChangesNothing(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		cases := []struct {
			name  string
			edit  func(m *identityv1.Member)
			pass  string
			field string
		}{
			{"bad email", func(m *identityv1.Member) { m.Email = "not-an-email" }, "", "member.email"},
			{"email with display name", func(m *identityv1.Member) { m.Email = "Ada <ada@example.com>" }, "", "member.email"},
			{"phone not E.164", func(m *identityv1.Member) { m.PhoneNumber = "020 7123 4567" }, "", "member.phone_number"},
			{"bad date", func(m *identityv1.Member) { m.BirthDate = "10/12/1990" }, "", "member.birth_date"},
			{"under 18", func(m *identityv1.Member) { m.BirthDate = time.Now().AddDate(-17, 0, 0).Format("2006-01-02") }, "", "member.birth_date"},
			{"oversized name", func(m *identityv1.Member) { m.FullName = strings.Repeat("x", 201) }, "", "member.full_name"},
			{"too many address lines", func(m *identityv1.Member) { m.PostalAddress.AddressLines = []string{"a", "b", "c", "d", "e"} }, "", "member.postal_address.address_lines"},
			{"short password", func(m *identityv1.Member) {}, "short", "password"},
		}
		for _, tc := range cases {
			m := ada()
			tc.edit(m)
			pass := tc.pass
			if pass == "" {
				pass = "correct horse battery"
			}
			_, err := h.client.CreateMember(ctx, &identityv1.CreateMemberRequest{Member: m, Password: pass})
			code, _, fields := reasonAndFields(err)
			if code != codes.InvalidArgument || len(fields) != 1 || fields[0] != tc.field {
				t.Errorf("%s: %v %v, want INVALID_ARGUMENT on %s", tc.name, code, fields, tc.field)
			}
		}
		page, err := h.client.ListMembers(ctx, &identityv1.ListMembersRequest{})
		if err != nil || len(page.GetMembers()) != 0 {
			t.Fatalf("rejected sign-ups left %d members (%v)", len(page.GetMembers()), err)
		}
		if _, err := h.client.GetMember(ctx, &identityv1.GetMemberRequest{Name: "members/../etc"}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("malformed name: %v", err)
		}
	})
}

// rawStorage returns every byte identity persisted: for SQLite the database files, for
// PostgreSQL every column of every row rendered as text.
func rawStorage(t *testing.T, h *harness) []byte {
	t.Helper()
	var buf bytes.Buffer
	if path, ok := strings.CutPrefix(h.dbURL, "sqlite:"); ok {
		for _, suffix := range []string{"", "-wal"} {
			b, _ := os.ReadFile(path + suffix)
			buf.Write(b)
		}
	}
	db := h.svc.Domain.DB
	for _, table := range []string{"members", "sessions", "verification_codes", "outbox", "events", "tombstones", "sign_in_failures"} {
		rows, err := db.Query("SELECT * FROM " + table)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				switch v := v.(type) {
				case []byte:
					buf.Write(v)
				case string:
					buf.WriteString(v)
				}
				buf.WriteByte(0)
			}
		}
		rows.Close()
	}
	// Files in the data directory (keys, mailbox) other than the mailbox must not hold
	// personal data either.
	entries, _ := os.ReadDir(h.dir)
	for _, e := range entries {
		if e.Name() != "mailbox.jsonl" {
			b, _ := os.ReadFile(filepath.Join(h.dir, e.Name()))
			buf.Write(b)
		}
	}
	return buf.Bytes()
}

func TestNoPlaintextPersonalDataAtRestBeforeOrAfterErasure(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		m := create(t, h, ada(), "")
		if _, err := h.client.SignIn(ctx, &identityv1.SignInRequest{Email: "ada.lovelace@example.com", Password: "correct horse battery", DeviceName: "Kitchen iPad", RememberMe: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.client.SendVerificationCode(ctx, &identityv1.SendVerificationCodeRequest{Name: m.GetName(), Purpose: identityv1.VerificationPurpose_VERIFICATION_PURPOSE_PRIVACY_REQUEST, Reference: "req-1"}); err != nil {
			t.Fatal(err)
		}
		secrets := []string{"ada.lovelace@example.com", "Ada.Lovelace", "Lovelace-Byron", "+442071234567", "Analytical Engine", "Marylebone", "pm_card_visa", "Kitchen iPad", "1990-12-10"}
		check := func(when string) {
			raw := rawStorage(t, h)
			if len(raw) == 0 {
				t.Fatal("read nothing")
			}
			for _, s := range secrets {
				if bytes.Contains(raw, []byte(s)) {
					t.Errorf("%s: plaintext %q found at rest", when, s)
				}
			}
		}
		check("before erasure")
		res, err := h.subject.EraseSubjectData(ctx, &subjectv1.EraseSubjectDataRequest{Subject: m.GetName(), RequestId: "erase-1", TombstoneId: "tomb-1"})
		if err != nil || res.GetReplayed() {
			t.Fatalf("erase: %v %v", res, err)
		}
		check("after erasure")
	})
}

func TestErasureIsIdempotentAndLeavesOnlyATombstone(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		m := create(t, h, ada(), "")
		signIn, err := h.client.SignIn(ctx, &identityv1.SignInRequest{Email: "ada.lovelace@example.com", Password: "correct horse battery", DeviceName: "TV", RememberMe: true})
		if err != nil {
			t.Fatal(err)
		}
		stream, err := h.subject.ExportSubjectData(ctx, &subjectv1.ExportSubjectDataRequest{Subject: m.GetName(), RequestId: "export-1"})
		if err != nil {
			t.Fatal(err)
		}
		datasets := map[string]int{}
		for {
			chunk, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			datasets[chunk.GetDataset()] += len(chunk.GetRecords())
			if chunk.GetDataset() == "account" {
				var back identityv1.Member
				if err := protojson.Unmarshal(chunk.GetRecords()[0], &back); err != nil || back.GetEmail() != "ada.lovelace@example.com" || back.GetPostalAddress().GetLocality() != "Marylebone" {
					t.Fatalf("exported account = %v, %v", &back, err)
				}
			}
		}
		if datasets["account"] != 1 || datasets["sessions"] != 1 {
			t.Fatalf("export datasets = %v", datasets)
		}
		first, err := h.subject.EraseSubjectData(ctx, &subjectv1.EraseSubjectDataRequest{Subject: m.GetName(), RequestId: "erase-1", TombstoneId: "tomb-1"})
		if err != nil {
			t.Fatal(err)
		}
		counts := map[string]int64{}
		for _, r := range first.GetResults() {
			counts[r.GetDataset()] = r.GetCount()
		}
		if counts["account"] != 1 || counts["sessions"] != 1 || counts["tombstone"] != 1 {
			t.Fatalf("erase results = %v", counts)
		}
		again, err := h.subject.EraseSubjectData(ctx, &subjectv1.EraseSubjectDataRequest{Subject: m.GetName(), RequestId: "erase-1", TombstoneId: "tomb-1"})
		if err != nil || !again.GetReplayed() || len(again.GetResults()) != len(first.GetResults()) {
			t.Fatalf("second erase: replayed=%v %v", again.GetReplayed(), err)
		}
		_, err = h.client.GetMember(ctx, &identityv1.GetMemberRequest{Name: m.GetName()})
		if code, reason, _ := reasonAndFields(err); code != codes.NotFound || reason != "MEMBER_NOT_FOUND" {
			t.Fatalf("get after erasure: %v %v", code, reason)
		}
		if _, err := h.client.RefreshSession(ctx, &identityv1.RefreshSessionRequest{RefreshToken: signIn.GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("refresh after erasure: %v", err)
		}
		if _, err := h.client.SignIn(ctx, &identityv1.SignInRequest{Email: "ada.lovelace@example.com", Password: "correct horse battery"}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("sign-in after erasure: %v", err)
		}
		rep, err := h.subject.ReportSubjectData(ctx, &subjectv1.ReportSubjectDataRequest{Subject: m.GetName()})
		if err != nil || len(rep.GetHeld()) != 1 || rep.GetHeld()[0].GetDataset() != "tombstone" || rep.GetHeld()[0].GetLegalBasis() == "" {
			t.Fatalf("report after erasure = %v %v", rep, err)
		}
		// The email is free again for a new, different account.
		if n := create(t, h, ada(), ""); n.GetName() == m.GetName() {
			t.Fatal("an erased id was reused")
		}
	})
}

func jwksVerifier(t *testing.T, h *harness) jwt.Verifier {
	t.Helper()
	set, err := h.client.GetJwks(context.Background(), &identityv1.GetJwksRequest{})
	if err != nil || len(set.GetKeys()) == 0 {
		t.Fatalf("jwks: %v %v", set, err)
	}
	raw, _ := json.Marshal(map[string]any{"keys": set.GetKeys()})
	ph, err := jwt.JWKSetToPublicKeysetHandle(raw)
	if err != nil {
		t.Fatalf("JWKS does not parse as a JWK set: %v\n%s", err, raw)
	}
	v, err := jwt.NewVerifier(ph)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSignInRefreshRotationAndRevocation(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		m := create(t, h, ada(), "")
		id := strings.TrimPrefix(m.GetName(), "members/")
		_, err := h.client.SignIn(ctx, &identityv1.SignInRequest{Email: "ada.lovelace@example.com", Password: "wrong password!!"})
		_, wrongReason, _ := reasonAndFields(err)
		_, err = h.client.SignIn(ctx, &identityv1.SignInRequest{Email: "nobody@example.com", Password: "wrong password!!"})
		_, unknownReason, _ := reasonAndFields(err)
		if wrongReason != "INVALID_CREDENTIALS" || unknownReason != wrongReason {
			t.Fatalf("wrong password %q vs unknown email %q: must be the same", wrongReason, unknownReason)
		}
		tv, err := h.client.SignIn(ctx, &identityv1.SignInRequest{Email: "ada.lovelace@example.com", Password: "correct horse battery", DeviceName: "TV", RememberMe: true})
		if err != nil {
			t.Fatal(err)
		}
		verified, err := jwksVerifier(t, h).VerifyAndDecode(tv.GetAccessToken(), mustValidator(t))
		if err != nil {
			t.Fatalf("access token does not verify against the JWKS: %v", err)
		}
		if sub, _ := verified.Subject(); sub != id {
			t.Fatalf("sub = %q", sub)
		}
		if role, _ := verified.StringClaim("role"); role != "member" {
			t.Fatalf("role = %q", role)
		}
		phone, err := h.client.SignIn(ctx, &identityv1.SignInRequest{Email: "ada.lovelace@example.com", Password: "correct horse battery", DeviceName: "Phone"})
		if err != nil {
			t.Fatal(err)
		}
		r1, err := h.client.RefreshSession(ctx, &identityv1.RefreshSessionRequest{RefreshToken: tv.GetRefreshToken()})
		if err != nil || r1.GetRefreshToken() == tv.GetRefreshToken() {
			t.Fatalf("refresh: %v", err)
		}
		// Presenting the rotated-out token again revokes the session.
		_, err = h.client.RefreshSession(ctx, &identityv1.RefreshSessionRequest{RefreshToken: tv.GetRefreshToken()})
		if _, reason, _ := reasonAndFields(err); reason != "REFRESH_TOKEN_REUSED" {
			t.Fatalf("reuse: %v", err)
		}
		if _, err := h.client.RefreshSession(ctx, &identityv1.RefreshSessionRequest{RefreshToken: r1.GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("session survived token reuse: %v", err)
		}
		list, err := h.client.ListSessions(ctx, &identityv1.ListSessionsRequest{Parent: m.GetName()})
		if err != nil || len(list.GetSessions()) != 1 || list.GetSessions()[0].GetDeviceName() != "Phone" {
			t.Fatalf("sessions = %v %v", list, err)
		}
		if _, err := h.client.RevokeSession(ctx, &identityv1.RevokeSessionRequest{Name: phone.GetSession().GetName()}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.client.RefreshSession(ctx, &identityv1.RefreshSessionRequest{RefreshToken: phone.GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("revoked device still refreshes: %v", err)
		}
		again, _ := h.client.SignIn(ctx, &identityv1.SignInRequest{Email: "ada.lovelace@example.com", Password: "correct horse battery"})
		if _, err := h.client.DisableMember(ctx, &identityv1.DisableMemberRequest{Name: m.GetName()}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.client.RefreshSession(ctx, &identityv1.RefreshSessionRequest{RefreshToken: again.GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("disable did not revoke sessions: %v", err)
		}
		if _, err := h.client.SignIn(ctx, &identityv1.SignInRequest{Email: "ada.lovelace@example.com", Password: "correct horse battery"}); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("disabled member signed in: %v", err)
		}
	})
}

func mustValidator(t *testing.T) *jwt.Validator {
	t.Helper()
	iss := "lethe-identity"
	v, err := jwt.NewValidator(&jwt.ValidatorOpts{ExpectedIssuer: &iss})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSignInThrottlesPerAccountAndClient(t *testing.T) {
	h := start(t, storagetest.SQLiteURL(t))
	ctx := context.Background()
	create(t, h, ada(), "")
	from := func(ip string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "x-lethe-client-ip", ip)
	}
	for range 5 {
		h.client.SignIn(from("203.0.113.1"), &identityv1.SignInRequest{Email: "ada.lovelace@example.com", Password: "wrong password!!"})
	}
	_, err := h.client.SignIn(from("203.0.113.1"), &identityv1.SignInRequest{Email: "ada.lovelace@example.com", Password: "correct horse battery"})
	if code, reason, _ := reasonAndFields(err); code != codes.ResourceExhausted || reason != "TOO_MANY_ATTEMPTS" {
		t.Fatalf("sixth attempt from the guessing client: %v %v", code, reason)
	}
	// The owner, from another address, is not locked out.
	if _, err := h.client.SignIn(from("198.51.100.2"), &identityv1.SignInRequest{Email: "ada.lovelace@example.com", Password: "correct horse battery"}); err != nil {
		t.Fatalf("the owner from another client: %v", err)
	}
	// Backoff: one minute after five failures, doubling with each further failure.
	base := time.Now()
	h.svc.Domain.Now = func() time.Time { return base.Add(61 * time.Second) }
	h.client.SignIn(from("203.0.113.1"), &identityv1.SignInRequest{Email: "ada.lovelace@example.com", Password: "wrong password!!"}) // sixth failure: 2 min
	h.svc.Domain.Now = func() time.Time { return base.Add(61*time.Second + 90*time.Second) }
	if _, err := h.client.SignIn(from("203.0.113.1"), &identityv1.SignInRequest{Email: "ada.lovelace@example.com", Password: "correct horse battery"}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("within the doubled backoff: %v", err)
	}
	h.svc.Domain.Now = func() time.Time { return base.Add(61*time.Second + 121*time.Second) }
	if _, err := h.client.SignIn(from("203.0.113.1"), &identityv1.SignInRequest{Email: "ada.lovelace@example.com", Password: "correct horse battery"}); err != nil {
		t.Fatalf("after the backoff: %v", err)
	}
}

// mailedCode delivers queued mail to the dev mailbox and returns the last code sent.
func mailedCode(t *testing.T, h *harness) string {
	t.Helper()
	if _, err := h.svc.Domain.DeliverPending(context.Background(), 100); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(h.dir, "mailbox.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m struct{ To, Body string }
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if m.To != "ada.lovelace@example.com" {
			t.Fatalf("mail went to the wrong address")
		}
		last = regexp.MustCompile(`\b[0-9]{6}\b`).FindString(m.Body)
	}
	return last
}

func TestVerificationCodes(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		m := create(t, h, ada(), "")
		send := func() *identityv1.VerificationChallenge {
			t.Helper()
			ch, err := h.client.SendVerificationCode(ctx, &identityv1.SendVerificationCodeRequest{Name: m.GetName(), Purpose: identityv1.VerificationPurpose_VERIFICATION_PURPOSE_PRIVACY_REQUEST, Reference: "members/x/privacyRequests/1"})
			if err != nil {
				t.Fatal(err)
			}
			return ch
		}
		check := func(ch *identityv1.VerificationChallenge, code string) (*identityv1.CheckVerificationCodeResponse, error) {
			return h.client.CheckVerificationCode(ctx, &identityv1.CheckVerificationCodeRequest{Name: m.GetName(), ChallengeId: ch.GetChallengeId(), Code: code})
		}
		ch := send()
		code := mailedCode(t, h)
		if len(code) != 6 {
			t.Fatalf("no code in the mailbox")
		}
		wrong := "000000"
		if code == wrong {
			wrong = "111111"
		}
		if r, err := check(ch, wrong); err != nil || r.GetVerified() {
			t.Fatalf("wrong code: %v %v", r, err)
		}
		if r, err := check(ch, code); err != nil || !r.GetVerified() || r.GetReference() != "members/x/privacyRequests/1" {
			t.Fatalf("right code: %v %v", r, err)
		}
		if _, err := check(ch, code); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("reuse: %v", err)
		}
		expiring := send()
		late := mailedCode(t, h)
		h.svc.Domain.Now = func() time.Time { return time.Now().Add(16 * time.Minute) }
		if _, err := check(expiring, late); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("expired code: %v", err)
		}
		h.svc.Domain.Now = time.Now
		guessed := send()
		for range 5 {
			check(guessed, wrong)
		}
		if _, err := check(guessed, mailedCode(t, h)); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("sixth attempt: %v", err)
		}
		send()
		send()
		_, err := h.client.SendVerificationCode(ctx, &identityv1.SendVerificationCodeRequest{Name: m.GetName(), Purpose: identityv1.VerificationPurpose_VERIFICATION_PURPOSE_PRIVACY_REQUEST})
		if _, reason, _ := reasonAndFields(err); reason != "TOO_MANY_CODES" {
			t.Fatalf("sixth code in an hour: %v", err)
		}
	})
}

func TestChildReportLocksTheAccountAndRecordsAnEvent(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		m := create(t, h, ada(), "")
		tokens, err := h.client.SignIn(ctx, &identityv1.SignInRequest{Email: "ada.lovelace@example.com", Password: "correct horse battery"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := h.client.ReportChild(ctx, &identityv1.ReportChildRequest{Name: m.GetName(), Reporter: identityv1.ChildReporter_CHILD_REPORTER_PARENT})
		if err != nil || got.GetState() != identityv1.MemberState_MEMBER_STATE_CHILD_REPORTED {
			t.Fatalf("report: %v %v", got, err)
		}
		if _, err := h.client.RefreshSession(ctx, &identityv1.RefreshSessionRequest{RefreshToken: tokens.GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("child's session survived: %v", err)
		}
		events, err := h.svc.Domain.PendingEvents(ctx, "child_reported", 10)
		if err != nil || len(events) != 1 || "members/"+events[0].MemberID != m.GetName() {
			t.Fatalf("events = %v %v", events, err)
		}
	})
}

func TestNotificationsAreIdempotentAndSentBeforeErasure(t *testing.T) {
	engines(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		m := create(t, h, ada(), "")
		req := &identityv1.NotifyMemberRequest{Name: m.GetName(), Template: identityv1.MessageTemplate_MESSAGE_TEMPLATE_ERASURE_CONFIRMED, Reference: "members/x/privacyRequests/r1", RequestId: "confirm-r1"}
		first, err := h.client.NotifyMember(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := h.client.NotifyMember(ctx, req)
		if err != nil || again.GetMessageId() != first.GetMessageId() {
			t.Fatalf("retry queued a second message: %v %v", again, err)
		}
		if _, err := h.client.NotifyMember(ctx, &identityv1.NotifyMemberRequest{Name: m.GetName(), RequestId: "x"}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("no template: %v", err)
		}
		// Erasing delivers the pending confirmation first, then destroys the address.
		if _, err := h.subject.EraseSubjectData(ctx, &subjectv1.EraseSubjectDataRequest{Subject: m.GetName(), RequestId: "erase-1", TombstoneId: "tomb-1"}); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(h.dir, "mailbox.jsonl"))
		if err != nil || bytes.Count(raw, []byte("Your account is being erased")) != 1 {
			t.Fatalf("mailbox after erasure: %s %v", raw, err)
		}
		ev, err := h.client.ListMemberEvents(ctx, &identityv1.ListMemberEventsRequest{Kind: "child_reported"})
		if err != nil || len(ev.GetEvents()) != 0 {
			t.Fatalf("events: %v %v", ev, err)
		}
	})
}
