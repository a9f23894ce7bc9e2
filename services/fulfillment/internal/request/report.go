package request

import (
	"archive/zip"
	"context"
	"encoding/json"
	"html/template"
	"slices"
	"sort"
	"strings"

	sharingv1 "lethe.dev/gen/lethe/sharing/v1"
)

type reportRecipient struct {
	Partner, Name, Kind string
	Purposes            []string
	Categories          []string
	Count               int
	First, Last         string
}

type reportSystem struct {
	Service, Title string
	Categories     []reportCategory
	Files          []ManifestFile
	Recipients     bool // the page lists the recipients (sharing)
}

var reportTemplate = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Your data: what we hold and why</title>
<style>body{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.5}
section{page-break-after:always;border-top:1px solid #999;margin-top:2em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}</style></head>
<body>
<h1>Your data: what we hold and why</h1>
<p>This report comes with the copy of your data you asked for (request {{.RequestID}}, made {{.Created}}).
It explains, system by system, what we hold, why, where it came from, how long we keep it, and who received it.
The data itself is in the folders of this archive, one per system.</p>
{{range .Systems}}<section id="{{.Service}}">
<h2>{{.Title}} <small>({{.Service}})</small></h2>
<table><tr><th>What</th><th>Why we hold it</th><th>Where it came from</th><th>How long we keep it</th></tr>
{{range .Categories}}<tr><td>{{.What}} <small>({{.Category}})</small></td><td>{{.Why}}</td><td>{{.Source}}</td><td>{{.Retention}}</td></tr>
{{end}}</table>
{{if .Files}}<p>Your data from this system is in these files of the archive:</p>
<table><tr><th>File</th><th>Records</th></tr>{{range .Files}}<tr><td>{{.Path}}</td><td>{{.Records}}</td></tr>{{end}}</table>{{end}}
{{if .Recipients}}<h3 id="recipients">Who received your data</h3>
{{if $.Recipients}}<table><tr><th>Recipient</th><th>Kind</th><th>Purposes</th><th>Data</th><th>Times</th><th>First</th><th>Last</th></tr>
{{range $.Recipients}}<tr><td>{{.Name}} ({{.Partner}})</td><td>{{.Kind}}</td><td>{{range $i, $p := .Purposes}}{{if $i}}, {{end}}{{$p}}{{end}}</td><td>{{range $i, $c := .Categories}}{{if $i}}, {{end}}{{$c}}{{end}}</td><td>{{.Count}}</td><td>{{.First}}</td><td>{{.Last}}</td></tr>
{{end}}</table>{{else}}<p>Your data was not disclosed to anyone outside the company.</p>{{end}}{{end}}
</section>
{{end}}<section id="rights">
<h2>Your rights</h2>
<ul><li>See your data (this archive) and take it elsewhere (the JSON files are machine-readable).</li>
<li>Have us correct it, restrict or object to its use, and object to any partner or purpose (also from the link in each advance notice).</li>
<li>Opt out of the sale or sharing of your data for ads, in your settings or with your browser's Global Privacy Control.</li>
<li>Have it erased, by asking for the erasure of your account. Where the law requires us to keep data (for example for legal proceedings), we keep it only for that purpose and as long as required, then erase it.</li>
<li>Complain to us, or to your data protection authority.</li></ul>
</section>
</body></html>
`))

// writeReport adds report.html: per system what is held, why, from where and for how
// long, the recipients of the member's data (from the sharing system's disclosure log,
// named from the partner registry), and the member's rights. Readable offline: no
// script, no external resource.
func (a *Activities) writeReport(ctx context.Context, zw *zip.Writer, in ArchiveInput, man Manifest) error {
	data := struct {
		RequestID, Created string
		Systems            []reportSystem
		Recipients         []*reportRecipient
	}{RequestID: in.RequestID, Created: man.Created.Format("2 January 2006")}
	for _, svc := range ReportSystems {
		title := systemTitles[svc]
		if title == "" {
			title = svc
		}
		rs := reportSystem{Service: svc, Title: title, Categories: systemCategories(svc), Recipients: svc == "sharing"}
		for _, f := range man.Files {
			if strings.HasPrefix(f.Path, svc+"/") {
				rs.Files = append(rs.Files, f)
			}
		}
		data.Systems = append(data.Systems, rs)
	}
	recips, err := a.recipients(ctx, in)
	if err != nil {
		return err
	}
	data.Recipients = recips
	w, err := zw.Create("report.html")
	if err != nil {
		return err
	}
	return reportTemplate.Execute(w, data)
}

// recipients aggregates the exported disclosure log by partner.
func (a *Activities) recipients(ctx context.Context, in ArchiveInput) ([]*reportRecipient, error) {
	if !slices.Contains(in.Services, "sharing") {
		return nil, nil
	}
	files, err := a.datasets(ctx, partsPrefix(in.RequestID, "sharing"))
	if err != nil {
		return nil, err
	}
	by := map[string]*reportRecipient{}
	for _, f := range files {
		if f.dataset != "disclosures" {
			continue
		}
		for _, k := range f.keys {
			if err := a.eachRecord(ctx, in.RequestID, k, func(rec []byte) error {
				var d struct {
					Partner, Purpose, DiscloseTime string
					DataCategories                 []string
				}
				if json.Unmarshal(rec, &d) != nil || d.Partner == "" {
					return nil
				}
				rc := by[d.Partner]
				if rc == nil {
					rc = &reportRecipient{Partner: d.Partner, Name: strings.TrimPrefix(d.Partner, "partners/"), First: d.DiscloseTime}
					by[d.Partner] = rc
				}
				rc.Count++
				if !slices.Contains(rc.Purposes, d.Purpose) {
					rc.Purposes = append(rc.Purposes, d.Purpose)
				}
				for _, c := range d.DataCategories {
					if !slices.Contains(rc.Categories, c) {
						rc.Categories = append(rc.Categories, c)
					}
				}
				if d.DiscloseTime < rc.First {
					rc.First = d.DiscloseTime
				}
				if d.DiscloseTime > rc.Last {
					rc.Last = d.DiscloseTime
				}
				return nil
			}); err != nil {
				return nil, err
			}
		}
	}
	out := make([]*reportRecipient, 0, len(by))
	for _, rc := range by {
		if a.Sharing != nil {
			if p, err := a.Sharing.GetPartner(ctx, &sharingv1.GetPartnerRequest{Name: rc.Partner}); err == nil {
				rc.Name = p.GetDisplayName()
				rc.Kind = strings.ToLower(strings.TrimPrefix(p.GetKind().String(), "PARTNER_KIND_"))
			}
		}
		sort.Strings(rc.Categories)
		out = append(out, rc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partner < out[j].Partner })
	return out, nil
}
