package api

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// Languages the pages speak; the first is the default.
var languages = []string{"en", "fr"}

// catalog holds every page string in every language. A key missing in a language falls back to English; a test
// checks that none is missing.
var catalog = map[string]map[string]string{
	"en": {
		"app.name":               "secondlook",
		"lang.switch":            "Language",
		"consent.title":          "Share your records for a second opinion",
		"consent.intro":          "%s has asked for a second opinion about your care. With your permission, secondlook will collect the records listed below, remove everything that identifies you, and share them with the specialist.",
		"consent.who":            "Who will see them",
		"consent.what":           "What will be shared",
		"consent.howlong":        "For how long",
		"consent.until":          "Until %s, or until you withdraw your consent, whichever comes first.",
		"consent.deid":           "Your name, contact details, identifiers and exact dates are removed before anything is shared. The specialist sees your medical information, not who you are.",
		"consent.sources":        "Where your records are",
		"consent.sources.help":   "Sign in at each place below to allow access. You can leave out kinds of records there.",
		"consent.authorize":      "Allow access at %s",
		"consent.done":           "Access allowed",
		"consent.pending":        "Not yet allowed",
		"consent.denied":         "Not allowed",
		"consent.notgranted":     "Not shared from here: %s",
		"consent.status":         "See the status of your consent",
		"status.title":           "Your consent",
		"status.active":          "Active",
		"status.inactive":        "No longer active",
		"status.withdraw":        "Withdraw my consent",
		"status.withdraw.help":   "Withdrawing stops all access at once: the access granted at each place is revoked, and anything already prepared for the specialist is deleted.",
		"status.withdrawn":       "You have withdrawn your consent. Nothing more will be collected, and anything prepared for the specialist has been deleted.",
		"status.signin.help":     "To withdraw your consent from this browser, first sign in at one of the places below, so that we know it is you.",
		"status.signin":          "Sign in at %s to withdraw",
		"status.review":          "Review status",
		"error.title":            "Something needs attention",
		"error.notfound":         "This link is not valid or has expired.",
		"error.auth":             "We could not complete the sign-in at %s. You can try again.",
		"error.denied":           "You did not allow access at %s. Nothing was collected from there.",
		"error.session":          "Your browser session did not match this sign-in. Please start again from the link you received.",
		"error.closed":           "This request can no longer be changed.",
		"error.signin":           "To withdraw your consent from this browser, first sign in at one of the places listed on the consent page, so that we know it is you.",
		"error.notpatient":       "You signed in at %s as someone other than the patient this request is for. Nothing was kept from that sign-in.",
		"error.generic":          "Something went wrong on our side. Please try again later.",
		"back":                   "Back",
		"type.DiagnosticReport":  "Test results and reports",
		"type.ImagingStudy":      "Imaging studies",
		"type.Condition":         "Conditions and diagnoses",
		"type.DocumentReference": "Clinical documents",
		"kind.hospital":          "hospital",
		"kind.provincial":        "provincial records",
	},
	"fr": {
		"app.name":               "secondlook",
		"lang.switch":            "Langue",
		"consent.title":          "Partager votre dossier pour un deuxième avis",
		"consent.intro":          "%s a demandé un deuxième avis sur vos soins. Avec votre permission, secondlook rassemblera les dossiers ci-dessous, en retirera tout ce qui vous identifie et les transmettra au spécialiste.",
		"consent.who":            "Qui les verra",
		"consent.what":           "Ce qui sera partagé",
		"consent.howlong":        "Pour combien de temps",
		"consent.until":          "Jusqu'au %s, ou jusqu'à ce que vous retiriez votre consentement, selon la première éventualité.",
		"consent.deid":           "Votre nom, vos coordonnées, vos numéros d'identification et les dates exactes sont retirés avant tout partage. Le spécialiste voit vos renseignements médicaux, pas votre identité.",
		"consent.sources":        "Où se trouvent vos dossiers",
		"consent.sources.help":   "Connectez-vous à chacun des endroits ci-dessous pour autoriser l'accès. Vous pouvez y exclure certains types de dossiers.",
		"consent.authorize":      "Autoriser l'accès à %s",
		"consent.done":           "Accès autorisé",
		"consent.pending":        "Pas encore autorisé",
		"consent.denied":         "Non autorisé",
		"consent.notgranted":     "Non partagé depuis cet endroit : %s",
		"consent.status":         "Voir l'état de votre consentement",
		"status.title":           "Votre consentement",
		"status.active":          "Actif",
		"status.inactive":        "N'est plus actif",
		"status.withdraw":        "Retirer mon consentement",
		"status.withdraw.help":   "Le retrait arrête immédiatement tout accès : l'accès accordé à chaque endroit est révoqué et tout ce qui a été préparé pour le spécialiste est supprimé.",
		"status.withdrawn":       "Vous avez retiré votre consentement. Rien de plus ne sera recueilli, et tout ce qui avait été préparé pour le spécialiste a été supprimé.",
		"status.signin.help":     "Pour retirer votre consentement depuis ce navigateur, connectez-vous d'abord à l'un des endroits ci-dessous, afin que nous sachions que c'est bien vous.",
		"status.signin":          "Se connecter à %s pour retirer",
		"status.review":          "État de la demande",
		"error.title":            "Une action est requise",
		"error.notfound":         "Ce lien n'est pas valide ou a expiré.",
		"error.auth":             "La connexion à %s n'a pas pu être terminée. Vous pouvez réessayer.",
		"error.denied":           "Vous n'avez pas autorisé l'accès à %s. Rien n'a été recueilli à cet endroit.",
		"error.session":          "Votre session de navigateur ne correspond pas à cette connexion. Veuillez recommencer à partir du lien reçu.",
		"error.closed":           "Cette demande ne peut plus être modifiée.",
		"error.signin":           "Pour retirer votre consentement depuis ce navigateur, connectez-vous d'abord à l'un des endroits indiqués sur la page de consentement, afin que nous sachions que c'est bien vous.",
		"error.notpatient":       "Vous vous êtes connecté à %s en tant qu'une autre personne que le patient visé par cette demande. Rien n'a été conservé de cette connexion.",
		"error.generic":          "Un problème est survenu de notre côté. Veuillez réessayer plus tard.",
		"back":                   "Retour",
		"type.DiagnosticReport":  "Résultats d'examens et rapports",
		"type.ImagingStudy":      "Examens d'imagerie",
		"type.Condition":         "Problèmes de santé et diagnostics",
		"type.DocumentReference": "Documents cliniques",
		"kind.hospital":          "hôpital",
		"kind.provincial":        "dossiers provinciaux",
	},
}

// localizer translates page strings for one request.
type localizer struct{ Lang string }

// T returns the string for key in the request's language, formatted with args.
func (l localizer) T(key string, args ...any) string {
	s, ok := catalog[l.Lang][key]
	if !ok {
		s, ok = catalog["en"][key]
	}
	if !ok {
		return key
	}
	if len(args) > 0 {
		return fmt.Sprintf(s, args...)
	}
	return s
}

var months = map[string][12]string{
	"en": {"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"},
	"fr": {"janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"},
}

// Date formats a day as people write it in the request's language: "26 November 2026", "26 novembre 2026".
func (l localizer) Date(t time.Time) string {
	m, ok := months[l.Lang]
	if !ok {
		m = months["en"]
	}
	return fmt.Sprintf("%d %s %d", t.Day(), m[t.Month()-1], t.Year())
}

const langCookie = "lang"

// negotiate picks the page language: an explicit choice (?lang=, remembered in a cookie), else the browser's Accept-Language, else English.
func negotiate(c echo.Context) localizer {
	if q := c.QueryParam("lang"); supported(q) {
		setLanguage(c, q)
		return localizer{Lang: q}
	}
	if ck, err := c.Cookie(langCookie); err == nil && supported(ck.Value) {
		return localizer{Lang: ck.Value}
	}
	best, bestQ := languages[0], -1.0
	for _, part := range strings.Split(c.Request().Header.Get("Accept-Language"), ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		base, _, _ := strings.Cut(strings.ToLower(tag), "-")
		if supported(base) && q > bestQ {
			best, bestQ = base, q
		}
	}
	return localizer{Lang: best}
}

func supported(lang string) bool {
	for _, l := range languages {
		if l == lang {
			return true
		}
	}
	return false
}

// setLanguage remembers an explicit language choice for a year.
func setLanguage(c echo.Context, lang string) {
	c.SetCookie(&http.Cookie{ //nolint:gosec // G124: HttpOnly and SameSite set; Secure whenever served over TLS
		Name: langCookie, Value: lang, Path: "/", MaxAge: 365 * 24 * 3600, HttpOnly: true,
		Secure: c.Request().TLS != nil, SameSite: http.SameSiteLaxMode,
	})
}
