package config

import (
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// EnvPrefix starts the name of every environment variable secondlook reads.
const EnvPrefix = "SECONDLOOK_"

// reservedEnvNames lists the SECONDLOOK_ variables that are not config overrides. A feature that reads its own
// SECONDLOOK_ variable adds it here, or Load rejects it as an unknown override.
func reservedEnvNames() []string {
	return []string{
		"SECONDLOOK_CONFIG",      // path of the config file, read by the command before Load
		"SECONDLOOK_FETCH_TOKEN", // access token for the fetch command, never stored in the config
	}
}

// IsReserved reports whether name is a SECONDLOOK_ environment variable owned by some other feature rather than a
// config override, so that Load neither applies it nor rejects it as unknown.
func IsReserved(name string) bool {
	return slices.Contains(reservedEnvNames(), name)
}

// applyEnv applies the SECONDLOOK_ overrides in environ to cfg in order, returning a problem for each variable that
// names no setting or whose value does not parse. Problems are keyed by variable name and never quote the value of
// a variable that named no setting.
func applyEnv(cfg *Config, environ []string) []Problem {
	return applyEnvTo(reflect.ValueOf(cfg).Elem(), environ)
}

// applyEnvTo applies overrides to root, an addressable struct shaped like Config.
func applyEnvTo(root reflect.Value, environ []string) []Problem {
	var problems []Problem
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) || IsReserved(name) {
			continue
		}
		var r envResolver
		targets := r.resolve(root, strings.TrimPrefix(name, EnvPrefix), "")
		switch {
		case len(targets) == 0 && r.unmatchedList != "":
			problems = append(problems, Problem{Path: name, Message: fmt.Sprintf(
				"names no configured entry of %s; overrides can change only entries defined in the config file, not create them",
				r.unmatchedList)})
		case len(targets) == 0:
			problems = append(problems, Problem{Path: name, Message: "names no config setting"})
		case len(targets) > 1:
			paths := make([]string, len(targets))
			for i, t := range targets {
				paths[i] = t.path
			}
			problems = append(problems, Problem{Path: name, Message: "is ambiguous: it names " + strings.Join(paths, " and ")})
		case targets[0].isKey:
			problems = append(problems, Problem{Path: name, Message: fmt.Sprintf(
				"%s cannot be overridden: entries are matched by it", targets[0].path)})
		default:
			if err := setFromEnv(targets[0].value, value); err != nil {
				problems = append(problems, Problem{Path: name, Message: fmt.Sprintf("%s: %v", targets[0].path, err)})
			}
		}
	}
	return problems
}

// envTarget is a setting an environment variable name resolved to.
type envTarget struct {
	value reflect.Value
	path  string
	isKey bool // the keyField of a keyed-list entry
}

// envResolver maps the part of a variable name after the prefix onto settings. Because keys and ids may themselves
// contain underscores, it tries every way of splitting the name along known keys and ids rather than splitting on
// "_", and returns all complete matches; more than one is an ambiguity, reported rather than guessed.
type envResolver struct {
	// unmatchedList is the path of a keyed list whose name matched but none of whose entries' ids did.
	unmatchedList string
}

func (r *envResolver) resolve(v reflect.Value, rest, path string) []envTarget {
	var out []envTarget
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name := yamlName(f)
		if name == "" {
			continue
		}
		token := envToken(name)
		p := joinPath(path, name)
		if rest == token {
			if isLeaf(f.Type) {
				out = append(out, envTarget{value: v.Field(i), path: p})
			}
			continue
		}
		sub, ok := strings.CutPrefix(rest, token+"_")
		if !ok {
			continue
		}
		switch {
		case isSection(f.Type):
			out = append(out, r.resolve(v.Field(i), sub, p)...)
		case isKeyedList(f.Type):
			out = append(out, r.resolveList(v.Field(i), sub, p)...)
		}
	}
	return out
}

func (r *envResolver) resolveList(list reflect.Value, rest, path string) []envTarget {
	var out []envTarget
	matched := false
	for j := range list.Len() {
		elem := list.Index(j)
		key := keyOf(elem)
		if key == "" {
			continue
		}
		token := envToken(key)
		if rest == token {
			matched = true // Names the entry but no setting in it.
			continue
		}
		sub, ok := strings.CutPrefix(rest, token+"_")
		if !ok {
			continue
		}
		matched = true
		elemPath := path + "[" + key + "]"
		for _, tg := range r.resolve(elem, sub, elemPath) {
			// An inner list may already have marked its own key field.
			tg.isKey = tg.isKey || tg.path == elemPath+"."+keyField
			out = append(out, tg)
		}
	}
	if !matched && r.unmatchedList == "" {
		r.unmatchedList = path
	}
	return out
}

// setFromEnv sets a leaf setting from an environment value. An empty value resets the setting to its zero value so
// that ApplyDefaults fills the default; a list is comma-separated.
func setFromEnv(v reflect.Value, s string) error {
	if s == "" {
		v.SetZero()
		return nil
	}
	if isScalar(v.Type()) {
		return setScalar(v, s)
	}
	parts := strings.Split(s, ",")
	list := reflect.MakeSlice(v.Type(), len(parts), len(parts))
	for i, part := range parts {
		part = strings.TrimSpace(part)
		if part == "" {
			return fmt.Errorf("list element %d is empty", i)
		}
		if err := setScalar(list.Index(i), part); err != nil {
			return fmt.Errorf("list element %d: %w", i, err)
		}
	}
	v.Set(list)
	return nil
}

// setScalar parses s into v. Strings (including secret references) are never quoted in errors because they cannot
// fail to parse; other kinds are quoted to help the operator.
func setScalar(v reflect.Value, s string) error {
	if tu, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return tu.UnmarshalText([]byte(s))
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if err := setScalar(p.Elem(), s); err != nil {
			return err
		}
		v.Set(p)
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("invalid boolean %q: want true or false", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid integer %q", s)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid non-negative integer %q", s)
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		n, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid number %q", s)
		}
		v.SetFloat(n)
	default:
		return errors.New("cannot be set from the environment")
	}
	return nil
}
