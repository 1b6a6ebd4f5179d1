package demo

import (
	"encoding/json"
	"html/template"
	"net/http"

	"secondlook/packet"
)

// viewer shows the packet as the provider would see it, for the demo only: it fetches the packet through the
// provider API with the provider's own token, verifies the signature, and renders the Composition's sections.
type viewer struct{ d *Demo }

var viewerPage = template.Must(template.New("v").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Provider view · secondlook demo</title><link rel="stylesheet" href="/static/app.css"></head>
<body><header><span class="brand">secondlook · provider view (demo)</span></header><main>
<h1>Review packet</h1>
{{if .Err}}<p class="error" role="alert">{{.Err}}</p>
{{else if not .Ready}}<p class="notice" role="status">The review is <strong>{{.State}}</strong>. Once the patient has consented at every source, the gateway assembles the packet; reload this page.</p>
{{else}}<p class="notice">Signature {{if .Verified}}verified against the gateway's published keys{{else}}NOT verified{{end}}. {{.Size}} bytes, {{.Entries}} resources.</p>
{{range .Sections}}<h2>{{.Title}}</h2>{{.Div}}{{end}}{{end}}
</main></body></html>`))

type viewSection struct {
	Title string
	Div   template.HTML
}

func (v viewer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	data := struct {
		Err, State      string
		Ready, Verified bool
		Size, Entries   int
		Sections        []viewSection
	}{}
	var rv struct {
		State string `json:"state"`
	}
	ctx := r.Context()
	if _, _, err := v.d.API(ctx, EHRClient, http.MethodGet, "/api/v1/reviews/"+v.d.ReviewID, nil, &rv); err != nil {
		data.Err = "The review could not be read."
	}
	data.State = rv.State
	if rv.State == "ready" {
		resp, pkt, err := v.d.API(ctx, ProviderClient, http.MethodGet, "/api/v1/packets/"+v.d.ReviewID, nil, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			data.Err = "The packet could not be downloaded."
		} else {
			data.Ready, data.Size = true, len(pkt)
			if keys, err := v.d.jwks(ctx); err == nil && packet.Verify(pkt, keys) == nil {
				data.Verified = true
			}
			var doc struct {
				Entry []struct {
					Resource struct {
						ResourceType string `json:"resourceType"`
						Section      []struct {
							Title string `json:"title"`
							Text  struct {
								Div string `json:"div"`
							} `json:"text"`
						} `json:"section"`
					} `json:"resource"`
				} `json:"entry"`
			}
			_ = json.Unmarshal(pkt, &doc)
			data.Entries = len(doc.Entry)
			if len(doc.Entry) > 0 && doc.Entry[0].Resource.ResourceType == "Composition" {
				for _, s := range doc.Entry[0].Resource.Section {
					// The narrative is the gateway's own generated, escaped XHTML over de-identified data, from a
					// packet whose signature was just checked.
					data.Sections = append(data.Sections, viewSection{Title: s.Title, Div: template.HTML(s.Text.Div)}) //nolint:gosec
				}
			}
		}
	}
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = viewerPage.Execute(w, data)
}
