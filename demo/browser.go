package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// Browser is a patient's browser over HTTP: it keeps cookies, follows redirects and submits forms as a person
// would, by the inputs' names and ids.
type Browser struct {
	client *http.Client
	// Page and URL are the last page loaded.
	Page []byte
	URL  *url.URL
	// Stopped is the redirect target StopAt stopped at.
	Stopped *url.URL
	// Status is the last response's status code.
	Status int
}

// NewBrowser returns a browser with an empty cookie jar.
func NewBrowser() *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{client: &http.Client{Jar: jar}}
}

// StopAt makes the browser stop before following a redirect to a URL for which stop returns true; the URL is kept
// in Stopped. Tests use it to hand a callback to another browser or to replay it.
func (b *Browser) StopAt(stop func(*url.URL) bool) {
	b.client.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if stop(req.URL) {
			b.Stopped = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}
}

// Get loads a page and follows redirects.
func (b *Browser) Get(ctx context.Context, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/html")
	return b.do(req)
}

func (b *Browser) do(req *http.Request) error {
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	b.Page, b.URL = page, resp.Request.URL
	b.Status = resp.StatusCode
	if resp.StatusCode >= 400 {
		return fmt.Errorf("%s: HTTP %d", resp.Request.URL.Path, resp.StatusCode)
	}
	return nil
}

// Follow loads the target of the link whose id is id.
func (b *Browser) Follow(ctx context.Context, id string) error {
	n := find(b.Page, func(n *html.Node) bool { return n.Data == "a" && attr(n, "id") == id })
	if n == nil {
		return fmt.Errorf("no link #%s on %s", id, b.URL.Path)
	}
	target, err := b.URL.Parse(attr(n, "href"))
	if err != nil {
		return err
	}
	return b.Get(ctx, target.String())
}

// Submit fills the form that contains the button with id button: set overrides fields by name (a nil value
// removes the field, several values submit it repeatedly), then it posts the form with that button.
func (b *Browser) Submit(ctx context.Context, button string, set map[string][]string) error {
	doc, err := html.Parse(bytes.NewReader(b.Page))
	if err != nil {
		return err
	}
	var form, btn *html.Node
	walk(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "button" && attr(n, "id") == button {
			btn = n
			for p := n.Parent; p != nil; p = p.Parent {
				if p.Data == "form" {
					form = p
					break
				}
			}
		}
	})
	if form == nil || btn == nil {
		return fmt.Errorf("no button #%s in a form on %s", button, b.URL.Path)
	}
	values := url.Values{}
	walk(form, func(n *html.Node) {
		if n.Type != html.ElementNode || n.Data != "input" || attr(n, "name") == "" {
			return
		}
		switch attr(n, "type") {
		case "checkbox", "radio":
			if hasAttr(n, "checked") {
				values.Add(attr(n, "name"), attr(n, "value"))
			}
		default:
			values.Add(attr(n, "name"), attr(n, "value"))
		}
	})
	for k, v := range set {
		if v == nil {
			values.Del(k)
		} else {
			values[k] = v
		}
	}
	if name := attr(btn, "name"); name != "" {
		values.Set(name, attr(btn, "value"))
	}
	action, err := b.URL.Parse(attr(form, "action"))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, action.String(), strings.NewReader(values.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	return b.do(req)
}

// Text returns the text of the element with id, or an error.
func (b *Browser) Text(id string) (string, error) {
	n := find(b.Page, func(n *html.Node) bool { return attr(n, "id") == id })
	if n == nil {
		return "", errors.New("no element #" + id)
	}
	var sb strings.Builder
	walk(n, func(c *html.Node) {
		if c.Type == html.TextNode {
			sb.WriteString(c.Data)
		}
	})
	return strings.TrimSpace(sb.String()), nil
}

// Has reports whether the page has an element with id.
func (b *Browser) Has(id string) bool {
	return find(b.Page, func(n *html.Node) bool { return attr(n, "id") == id }) != nil
}

// Options returns the values of the inputs named name on the page.
func (b *Browser) Options(name string) []string {
	doc, err := html.Parse(bytes.NewReader(b.Page))
	if err != nil {
		return nil
	}
	var out []string
	walk(doc, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "input" && attr(n, "name") == name {
			out = append(out, attr(n, "value"))
		}
	})
	return out
}

func find(page []byte, match func(*html.Node) bool) *html.Node {
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		return nil
	}
	var found *html.Node
	walk(doc, func(n *html.Node) {
		if found == nil && n.Type == html.ElementNode && match(n) {
			found = n
		}
	})
	return found
}

func walk(n *html.Node, f func(*html.Node)) {
	f(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, f)
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if a.Key == key {
			return true
		}
	}
	return false
}
