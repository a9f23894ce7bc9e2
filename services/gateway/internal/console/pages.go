package console

import (
	"encoding/csv"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	fulfillmentv1 "lethe.dev/gen/lethe/fulfillment/v1"
	identityv1 "lethe.dev/gen/lethe/identity/v1"
	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
)

const queuePageSize = 25

func enumLabel(s, prefix string) string {
	s = strings.ToLower(strings.TrimPrefix(s, prefix))
	return strings.ReplaceAll(s, "_", " ")
}

func (c *Console) funcs() template.FuncMap {
	return template.FuncMap{
		"state": func(s fulfillmentv1.RequestState) string { return enumLabel(s.String(), "REQUEST_STATE_") },
		"stateClass": func(s fulfillmentv1.RequestState) string {
			return strings.ToLower(strings.TrimPrefix(s.String(), "REQUEST_STATE_"))
		},
		"kind": func(k fulfillmentv1.RequestKind) string { return enumLabel(k.String(), "REQUEST_KIND_") },
		"jurisdiction": func(j fulfillmentv1.Jurisdiction) string {
			return strings.ToUpper(enumLabel(j.String(), "JURISDICTION_"))
		},
		"origin":      func(o fulfillmentv1.RequestOrigin) string { return enumLabel(o.String(), "REQUEST_ORIGIN_") },
		"partnerKind": func(k sharingv1.PartnerKind) string { return enumLabel(k.String(), "PARTNER_KIND_") },
		"time": func(t *timestamppb.Timestamp) string {
			if t == nil {
				return "—"
			}
			return t.AsTime().UTC().Format("2006-01-02 15:04 UTC")
		},
		"date": func(t *timestamppb.Timestamp) string {
			if t == nil {
				return "—"
			}
			return t.AsTime().UTC().Format("2 Jan 2006")
		},
		"iso": func(t *timestamppb.Timestamp) string { return t.AsTime().UTC().Format(time.RFC3339) },
		"days": func(d *durationpb.Duration) string {
			if d == nil {
				return "—"
			}
			return strconv.FormatFloat(d.AsDuration().Hours()/24, 'f', -1, 64) + " d"
		},
		"daysNum": func(d *durationpb.Duration) string {
			return strconv.FormatFloat(d.AsDuration().Hours()/24, 'f', -1, 64)
		},
		"dueClass": c.dueClass,
		"dueText":  c.dueText,
		"open": func(p *fulfillmentv1.PrivacyRequest) bool {
			switch p.GetState() {
			case fulfillmentv1.RequestState_REQUEST_STATE_COMPLETED, fulfillmentv1.RequestState_REQUEST_STATE_CANCELLED, fulfillmentv1.RequestState_REQUEST_STATE_EXPIRED,
				fulfillmentv1.RequestState_REQUEST_STATE_DENIED, fulfillmentv1.RequestState_REQUEST_STATE_FAILED:
				return false
			}
			return true
		},
		"ids": func(name string) []string { // members/{m}/privacyRequests/{r} → [m, r]
			p := strings.Split(name, "/")
			if len(p) != 4 {
				return []string{"", ""}
			}
			return []string{p[1], p[3]}
		},
		"last":  func(name string) string { return name[strings.LastIndex(name, "/")+1:] },
		"join":  func(s []string) string { return strings.Join(s, ", ") },
		"f1":    func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
		"query": func(v url.Values) template.URL { return template.URL(v.Encode()) },
		"short": func(action string) string { return action[strings.LastIndex(action, "/")+1:] },
	}
}

// dueClass colours a due date by the time left: overdue, under 3 days (at risk), under
// 7 days, later. Closed requests are not coloured.
func (c *Console) dueClass(p *fulfillmentv1.PrivacyRequest) string {
	if p.GetCompleteTime() != nil {
		return "due-closed"
	}
	left := p.GetDueTime().AsTime().Sub(c.o.Now())
	switch {
	case left < 0:
		return "due-overdue"
	case left < 3*24*time.Hour:
		return "due-risk"
	case left < 7*24*time.Hour:
		return "due-soon"
	}
	return "due-ok"
}

// dueText says the time left in words, so colour is never the only signal.
func (c *Console) dueText(p *fulfillmentv1.PrivacyRequest) string {
	if p.GetCompleteTime() != nil {
		return "closed"
	}
	left := p.GetDueTime().AsTime().Sub(c.o.Now())
	d := int(math.Round(math.Abs(left.Hours()) / 24))
	unit := fmt.Sprintf("%d days", d)
	switch h := int(math.Abs(left.Hours())); {
	case d == 1:
		unit = "1 day"
	case d < 1 && h == 1:
		unit = "1 hour"
	case d < 1:
		unit = fmt.Sprintf("%d hours", h)
	}
	switch {
	case left < 0:
		return "overdue by " + unit
	case left < 3*24*time.Hour:
		return "at risk: " + unit + " left"
	}
	return unit + " left"
}

type queueData struct {
	Requests   []*fulfillmentv1.PrivacyRequest
	Counts     []*fulfillmentv1.StateCount
	AtRisk     int64
	Overdue    int64
	Total      int32
	Kind       string
	Juris      string
	Filter     string
	Kinds      []string
	Jurs       []string
	Filters    [][2]string
	Next, Prev template.URL
	From, To   int
	Base       url.Values
}

func (c *Console) queue(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := queueData{Kind: q.Get("kind"), Juris: q.Get("jurisdiction"), Filter: q.Get("filter"),
		Kinds: []string{"ACCESS", "ERASURE", "CHILD_ERASURE"}, Jurs: []string{"POLICY", "GDPR", "CCPA"}}
	if _, set := q["filter"]; !set {
		d.Filter = "open"
	}
	d.Filters = [][2]string{{"open", "Open"}, {"at_risk", "At risk (due within 3 days)"}, {"overdue", "Overdue"}, {"", "All"}}
	for i := 1; i < len(fulfillmentv1.RequestState_name); i++ {
		n := fulfillmentv1.RequestState_name[int32(i)]
		d.Filters = append(d.Filters, [2]string{strings.ToLower(strings.TrimPrefix(n, "REQUEST_STATE_")), "State: " + enumLabel(n, "REQUEST_STATE_")})
	}
	req := &fulfillmentv1.ListPrivacyRequestsRequest{Parent: "members/-", PageSize: queuePageSize, Filter: d.Filter}
	if d.Kind != "" {
		req.Kind = fulfillmentv1.RequestKind(fulfillmentv1.RequestKind_value["REQUEST_KIND_"+d.Kind])
	}
	if d.Juris != "" {
		req.Jurisdiction = fulfillmentv1.Jurisdiction(fulfillmentv1.Jurisdiction_value["JURISDICTION_"+d.Juris])
	}
	offset, _ := strconv.Atoi(q.Get("offset"))
	if offset < 0 {
		offset = 0
	}
	if offset > 0 {
		req.PageToken = strconv.Itoa(offset)
	}
	ctx, cancel := c.ctx(r, s)
	defer cancel()
	res, err := c.fulfillment.ListPrivacyRequests(ctx, req)
	p := page{Title: "Queue", Nav: "queue"}
	if err != nil {
		msg, done := c.failure(w, r, err)
		if done {
			return
		}
		p.Error = msg
	}
	d.Requests, d.Counts, d.AtRisk, d.Overdue, d.Total = res.GetPrivacyRequests(), res.GetStateCounts(), res.GetAtRiskCount(), res.GetOverdueCount(), res.GetTotalSize()
	d.Base = url.Values{"kind": {d.Kind}, "jurisdiction": {d.Juris}, "filter": {d.Filter}}
	d.From, d.To = offset+1, offset+len(d.Requests)
	if res.GetNextPageToken() != "" {
		v := url.Values{"kind": {d.Kind}, "jurisdiction": {d.Juris}, "filter": {d.Filter}, "offset": {res.GetNextPageToken()}}
		d.Next = template.URL(v.Encode())
	}
	if offset > 0 {
		v := url.Values{"kind": {d.Kind}, "jurisdiction": {d.Juris}, "filter": {d.Filter}, "offset": {strconv.Itoa(max(0, offset-queuePageSize))}}
		d.Prev = template.URL(v.Encode())
	}
	p.Data = d
	c.render(w, r, s, "queue", http.StatusOK, p)
}

type requestData struct {
	T          *fulfillmentv1.PrivacyRequestTimeline
	P          *fulfillmentv1.PrivacyRequest
	Member, ID string
	Workflow   string // Temporal UI link
	CanExtend  bool
	CanHold    bool
	CanRelease bool
	CanCancel  bool
	CanResend  bool
	Action     string // the failed action, to show its error next to its form
}

func (c *Console) requestName(r *http.Request) string {
	return "members/" + r.PathValue("member") + "/privacyRequests/" + r.PathValue("request")
}

func (c *Console) request(w http.ResponseWriter, r *http.Request, s *session) {
	c.showRequest(w, r, s, http.StatusOK, "", "")
}

func (c *Console) showRequest(w http.ResponseWriter, r *http.Request, s *session, code int, action, msg string) {
	ctx, cancel := c.ctx(r, s)
	defer cancel()
	t, err := c.fulfillment.GetPrivacyRequestTimeline(ctx, &fulfillmentv1.GetPrivacyRequestTimelineRequest{Name: c.requestName(r)})
	if err != nil {
		m, done := c.failure(w, r, err)
		if done {
			return
		}
		c.render(w, r, s, "error", http.StatusNotFound, page{Title: "Request", Nav: "queue", Error: m})
		return
	}
	pr := t.GetPrivacyRequest()
	d := requestData{T: t, P: pr, Member: r.PathValue("member"), ID: r.PathValue("request"), Action: action}
	if c.o.TemporalUI != "" {
		d.Workflow = strings.TrimRight(c.o.TemporalUI, "/") + "/namespaces/" + url.PathEscape(c.o.Namespace) + "/workflows/" + url.PathEscape(t.GetWorkflowId())
	}
	st := pr.GetState()
	open := pr.GetCompleteTime() == nil && st != fulfillmentv1.RequestState_REQUEST_STATE_COMPLETED
	j := pr.GetJurisdiction()
	d.CanExtend = open && !pr.GetExtended() && (j == fulfillmentv1.Jurisdiction_JURISDICTION_GDPR || j == fulfillmentv1.Jurisdiction_JURISDICTION_CCPA)
	// A hold is recorded at once (hold_reason); the workflow shows ON_HOLD only when it
	// reaches the point where it waits (after verification and cooling-off).
	held := pr.GetHoldReason() != "" || st == fulfillmentv1.RequestState_REQUEST_STATE_ON_HOLD
	d.CanHold = open && !held
	d.CanRelease = open && held
	d.CanCancel = pr.GetKind() != fulfillmentv1.RequestKind_REQUEST_KIND_CHILD_ERASURE &&
		(st == fulfillmentv1.RequestState_REQUEST_STATE_COOLING_OFF || st == fulfillmentv1.RequestState_REQUEST_STATE_AWAITING_VERIFICATION)
	d.CanResend = st == fulfillmentv1.RequestState_REQUEST_STATE_AWAITING_VERIFICATION
	c.render(w, r, s, "request", code, page{Title: "Request " + d.ID, Nav: "queue", Error: msg, Data: d})
}

// act runs one operator action on a request, each with the operator's reason.
func (c *Console) act(w http.ResponseWriter, r *http.Request, s *session) {
	name, action := c.requestName(r), r.PathValue("action")
	reason, rerr := reasonOf(r)
	if rerr != nil {
		c.showRequest(w, r, s, http.StatusBadRequest, action, rerr.Error())
		return
	}
	ctx, cancel := c.ctx(r, s)
	defer cancel()
	var err error
	switch action {
	case "extend":
		if len(reason) < 10 {
			c.showRequest(w, r, s, http.StatusBadRequest, action, "An extension's reason is told to the member: explain it in at least 10 characters.")
			return
		}
		_, err = c.fulfillment.ExtendPrivacyRequest(ctx, &fulfillmentv1.ExtendPrivacyRequestRequest{Name: name, Reason: reason})
	case "hold":
		_, err = c.fulfillment.SetLegalHold(ctx, &fulfillmentv1.SetLegalHoldRequest{Name: name, Reason: reason})
	case "release":
		_, err = c.fulfillment.ReleaseLegalHold(ctx, &fulfillmentv1.ReleaseLegalHoldRequest{Name: name, Reason: reason})
	case "cancel":
		_, err = c.fulfillment.CancelPrivacyRequest(ctx, &fulfillmentv1.CancelPrivacyRequestRequest{Name: name, Reason: reason})
	case "resend":
		_, err = c.fulfillment.ResendVerification(ctx, &fulfillmentv1.ResendVerificationRequest{Name: name, Reason: reason})
	case "view":
		c.viewMember(w, r, s, reason)
		return
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		msg, done := c.failure(w, r, err)
		if !done {
			c.showRequest(w, r, s, http.StatusBadRequest, action, msg)
		}
		return
	}
	http.Redirect(w, r, base+"requests/"+r.PathValue("member")+"/"+r.PathValue("request")+"?done="+action, http.StatusSeeOther)
}

// viewMember shows the member's personal data: only on this explicit, reasoned action,
// which identity's authorization interceptor writes to the audit log with the reason.
func (c *Console) viewMember(w http.ResponseWriter, r *http.Request, s *session, reason string) {
	ctx, cancel := c.ctx(r, s)
	defer cancel()
	m, err := c.identity.GetMember(ctx, &identityv1.GetMemberRequest{Name: "members/" + r.PathValue("member"), Reason: reason})
	if err != nil {
		msg, done := c.failure(w, r, err)
		if !done {
			c.showRequest(w, r, s, http.StatusBadRequest, "view", msg)
		}
		return
	}
	c.render(w, r, s, "member", http.StatusOK, page{Title: "Member data", Nav: "queue", Data: map[string]any{
		"M": m, "Back": base + "requests/" + r.PathValue("member") + "/" + r.PathValue("request"), "Reason": reason}})
}

type partnerRow struct {
	P        *sharingv1.Partner
	Purposes []*sharingv1.Purpose
}

func (c *Console) partners(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := c.ctx(r, s)
	defer cancel()
	p := page{Title: "Partners", Nav: "partners"}
	var rows []partnerRow
	tok := ""
	for range 10 {
		res, err := c.sharing.ListPartners(ctx, &sharingv1.ListPartnersRequest{PageSize: 500, PageToken: tok})
		if err != nil {
			msg, done := c.failure(w, r, err)
			if done {
				return
			}
			p.Error = msg
			break
		}
		for _, pa := range res.GetPartners() {
			pu, err := c.sharing.ListPurposes(ctx, &sharingv1.ListPurposesRequest{Parent: pa.GetName()})
			if err != nil {
				p.Error, _ = c.failure(w, r, err)
			}
			rows = append(rows, partnerRow{P: pa, Purposes: pu.GetPurposes()})
		}
		if tok = res.GetNextPageToken(); tok == "" {
			break
		}
	}
	p.Data = rows
	c.render(w, r, s, "partners", http.StatusOK, p)
}

var partnerKinds = []string{"PROCESSOR", "MARKETING_PARTNER", "SOCIAL_NETWORK", "ADVERTISER", "LEGAL_AUTHORITY", "ACQUIRER"}

type partnerForm struct {
	New      bool
	P        *sharingv1.Partner
	Purposes []*sharingv1.Purpose
	Kinds    []string
	Form     url.Values
}

func (c *Console) partnerNew(w http.ResponseWriter, r *http.Request, s *session) {
	c.render(w, r, s, "partner", http.StatusOK, page{Title: "New partner", Nav: "partners", Data: partnerForm{New: true, P: &sharingv1.Partner{}, Kinds: partnerKinds}})
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' }) {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func partnerFromForm(f url.Values) *sharingv1.Partner {
	p := &sharingv1.Partner{DisplayName: strings.TrimSpace(f.Get("display_name")), Purposes: splitList(f.Get("purposes")), DataCategories: splitList(f.Get("data_categories")),
		AgreementRef: strings.TrimSpace(f.Get("agreement_ref")), ErasureWebhookUrl: strings.TrimSpace(f.Get("erasure_webhook_url")), WebhookSecret: f.Get("webhook_secret"),
		Kind: sharingv1.PartnerKind(sharingv1.PartnerKind_value["PARTNER_KIND_"+f.Get("kind")])}
	if d, err := strconv.ParseFloat(f.Get("ack_deadline_days"), 64); err == nil && d > 0 {
		p.AckDeadline = durationpb.New(time.Duration(d * 24 * float64(time.Hour)))
	}
	return p
}

func (c *Console) partnerCreate(w http.ResponseWriter, r *http.Request, s *session) {
	reason, err := reasonOf(r)
	p := partnerFromForm(r.PostForm)
	if err == nil {
		ctx, cancel := c.ctx(r, s)
		defer cancel()
		var created *sharingv1.Partner
		if created, err = c.sharing.CreatePartner(ctx, &sharingv1.CreatePartnerRequest{Partner: p, PartnerId: strings.TrimSpace(r.PostForm.Get("partner_id")), Reason: reason}); err == nil {
			http.Redirect(w, r, base+"partners/"+url.PathEscape(strings.TrimPrefix(created.GetName(), "partners/"))+"?done=partner", http.StatusSeeOther)
			return
		}
		msg, done := c.failure(w, r, err)
		if done {
			return
		}
		err = fmt.Errorf("%s", msg)
	}
	c.render(w, r, s, "partner", http.StatusBadRequest, page{Title: "New partner", Nav: "partners", Error: err.Error(), Data: partnerForm{New: true, P: p, Kinds: partnerKinds, Form: r.PostForm}})
}

func (c *Console) partner(w http.ResponseWriter, r *http.Request, s *session) {
	c.showPartner(w, r, s, http.StatusOK, "")
}

func (c *Console) showPartner(w http.ResponseWriter, r *http.Request, s *session, code int, msg string) {
	ctx, cancel := c.ctx(r, s)
	defer cancel()
	name := "partners/" + r.PathValue("partner")
	p, err := c.sharing.GetPartner(ctx, &sharingv1.GetPartnerRequest{Name: name})
	if err != nil {
		m, done := c.failure(w, r, err)
		if !done {
			c.render(w, r, s, "error", http.StatusNotFound, page{Title: "Partner", Nav: "partners", Error: m})
		}
		return
	}
	pu, _ := c.sharing.ListPurposes(ctx, &sharingv1.ListPurposesRequest{Parent: name})
	c.render(w, r, s, "partner", code, page{Title: "Partner " + p.GetDisplayName(), Nav: "partners", Error: msg, Data: partnerForm{P: p, Purposes: pu.GetPurposes(), Kinds: partnerKinds}})
}

func (c *Console) partnerUpdate(w http.ResponseWriter, r *http.Request, s *session) {
	reason, err := reasonOf(r)
	if err != nil {
		c.showPartner(w, r, s, http.StatusBadRequest, err.Error())
		return
	}
	p := partnerFromForm(r.PostForm)
	p.Name, p.Etag = "partners/"+r.PathValue("partner"), r.PostForm.Get("etag")
	paths := []string{"display_name", "purposes", "data_categories", "agreement_ref", "erasure_webhook_url"}
	if p.AckDeadline != nil {
		paths = append(paths, "ack_deadline")
	}
	if p.WebhookSecret != "" {
		paths = append(paths, "webhook_secret")
	}
	ctx, cancel := c.ctx(r, s)
	defer cancel()
	if _, err := c.sharing.UpdatePartner(ctx, &sharingv1.UpdatePartnerRequest{Partner: p, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}, Reason: reason}); err != nil {
		msg, done := c.failure(w, r, err)
		if !done {
			c.showPartner(w, r, s, http.StatusBadRequest, msg)
		}
		return
	}
	http.Redirect(w, r, base+"partners/"+url.PathEscape(r.PathValue("partner"))+"?done=partner", http.StatusSeeOther)
}

func (c *Console) purposeCreate(w http.ResponseWriter, r *http.Request, s *session) {
	reason, err := reasonOf(r)
	if err != nil {
		c.showPartner(w, r, s, http.StatusBadRequest, err.Error())
		return
	}
	f := r.PostForm
	pu := &sharingv1.Purpose{Description: strings.TrimSpace(f.Get("description")), DataCategories: splitList(f.Get("data_categories")), LegalBasis: strings.TrimSpace(f.Get("legal_basis"))}
	if d, err := strconv.ParseFloat(f.Get("notice_days"), 64); err == nil && d >= 0 {
		pu.NoticePeriod = durationpb.New(time.Duration(d * 24 * float64(time.Hour)))
	}
	ctx, cancel := c.ctx(r, s)
	defer cancel()
	if _, err := c.sharing.CreatePurpose(ctx, &sharingv1.CreatePurposeRequest{Parent: "partners/" + r.PathValue("partner"), Purpose: pu,
		PurposeId: strings.TrimSpace(f.Get("purpose_id")), Reason: reason}); err != nil {
		msg, done := c.failure(w, r, err)
		if !done {
			c.showPartner(w, r, s, http.StatusBadRequest, msg)
		}
		return
	}
	http.Redirect(w, r, base+"partners/"+url.PathEscape(r.PathValue("partner"))+"?done=purpose", http.StatusSeeOther)
}

type figuresData struct {
	Year  int
	Years []int
	S     *fulfillmentv1.RequestStatistics
	Chart template.HTML
}

func (c *Console) stats(w http.ResponseWriter, r *http.Request, s *session) (int, *fulfillmentv1.RequestStatistics, string, bool) {
	year := c.o.Now().UTC().Year()
	if y, err := strconv.Atoi(r.URL.Query().Get("year")); err == nil && y >= 2000 && y <= 2100 {
		year = y
	}
	ctx, cancel := c.ctx(r, s)
	defer cancel()
	st, err := c.fulfillment.GetRequestStatistics(ctx, &fulfillmentv1.GetRequestStatisticsRequest{Year: int32(year)})
	if err != nil {
		msg, done := c.failure(w, r, err)
		return year, nil, msg, done
	}
	return year, st, "", false
}

func (c *Console) figures(w http.ResponseWriter, r *http.Request, s *session) {
	year, st, msg, done := c.stats(w, r, s)
	if done {
		return
	}
	d := figuresData{Year: year, S: st, Chart: chart(st)}
	for y := c.o.Now().UTC().Year(); y >= c.o.Now().UTC().Year()-5; y-- {
		d.Years = append(d.Years, y)
	}
	c.render(w, r, s, "figures", http.StatusOK, page{Title: "Regulator figures", Nav: "figures", Error: msg, Data: d})
}

func (c *Console) figuresCSV(w http.ResponseWriter, r *http.Request, s *session) {
	year, st, msg, done := c.stats(w, r, s)
	if done {
		return
	}
	if st == nil {
		http.Error(w, msg, http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="lethe-requests-%d.csv"`, year))
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"year", "kind", "received", "completed", "denied", "median_days_to_respond", "p90_days_to_respond"})
	for _, k := range st.GetKinds() {
		_ = cw.Write([]string{strconv.Itoa(year), strings.ToLower(strings.TrimPrefix(k.GetKind().String(), "REQUEST_KIND_")), strconv.FormatInt(k.GetReceived(), 10),
			strconv.FormatInt(k.GetCompleted(), 10), strconv.FormatInt(k.GetDenied(), 10), strconv.FormatFloat(k.GetMedianDaysToRespond(), 'f', 2, 64),
			strconv.FormatFloat(k.GetP90DaysToRespond(), 'f', 2, 64)})
	}
	cw.Flush()
}

// chart draws received/completed/denied per kind as grouped bars (inline SVG, with a
// title and description for screen readers; the table carries the same figures).
func chart(st *fulfillmentv1.RequestStatistics) template.HTML {
	if st == nil {
		return ""
	}
	const w, h, top, bottom, left = 640, 260, 20, 40, 40
	var maxV int64 = 1
	for _, k := range st.GetKinds() {
		maxV = max(maxV, k.GetReceived(), k.GetCompleted(), k.GetDenied())
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg">`, w, h)
	fmt.Fprintf(&b, `<title id="chart-title">Requests in %d by kind</title><desc id="chart-desc">Bars of received, completed and denied requests per kind; the table below has the figures.</desc>`, st.GetYear())
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" class="axis"/>`, left, h-bottom, w-10, h-bottom)
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="tick" text-anchor="end">%d</text><text x="%d" y="%d" class="tick" text-anchor="end">0</text>`, left-6, top+4, maxV, left-6, h-bottom)
	groupW := float64(w-left-10) / float64(max(1, len(st.GetKinds())))
	barW := groupW / 4
	series := []string{"received", "completed", "denied"}
	for i, k := range st.GetKinds() {
		x0 := float64(left) + groupW*float64(i) + barW/2
		for j, v := range []int64{k.GetReceived(), k.GetCompleted(), k.GetDenied()} {
			bh := float64(h-top-bottom) * float64(v) / float64(maxV)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" class="bar-%s"><title>%s %s: %d</title></rect>`,
				x0+barW*float64(j), float64(h-bottom)-bh, barW-2, bh, series[j], template.HTMLEscapeString(enumLabel(k.GetKind().String(), "REQUEST_KIND_")), series[j], v)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="val" text-anchor="middle">%d</text>`, x0+barW*float64(j)+barW/2-1, float64(h-bottom)-bh-4, v)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="label" text-anchor="middle">%s</text>`, x0+barW*1.5, h-bottom+18, template.HTMLEscapeString(enumLabel(k.GetKind().String(), "REQUEST_KIND_")))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every interpolated string is escaped above
}

func (c *Console) audit(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	ctx, cancel := c.ctx(r, s)
	defer cancel()
	target := strings.TrimSpace(q.Get("target"))
	res, err := c.fulfillment.ListAuditEvents(ctx, &fulfillmentv1.ListAuditEventsRequest{PageSize: 50, PageToken: q.Get("page_token"), Target: target})
	p := page{Title: "Audit log", Nav: "audit"}
	if err != nil {
		msg, done := c.failure(w, r, err)
		if done {
			return
		}
		p.Error = msg
	}
	var next template.URL
	if t := res.GetNextPageToken(); t != "" {
		next = template.URL(url.Values{"target": {target}, "page_token": {t}}.Encode())
	}
	p.Data = map[string]any{"Events": res.GetAuditEvents(), "Target": target, "Next": next}
	c.render(w, r, s, "audit", http.StatusOK, p)
}
