package config

import (
	"encoding"
	"reflect"
	"strings"
)

// The helpers in this file read the config's shape from its Go types and yaml tags, so that strict decoding and
// environment overrides cover new fields without further code.

// keyField is the yaml name of the field that identifies an element of a list of structs (a source's id); such
// lists are addressed by key in environment overrides.
const keyField = "id"

var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

// yamlName is the key a struct field is decoded from, or "" if yaml.v3 ignores the field.
func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch name {
	case "-":
		return ""
	case "":
		return strings.ToLower(f.Name)
	}
	return name
}

// fieldByYAMLName finds the field of struct type t decoded from key.
func fieldByYAMLName(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); yamlName(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// isScalar reports whether t is set from a single string: a text-unmarshalable type or a basic kind, or a pointer
// to one (an optional setting whose zero value means something, so that left out is nil).
func isScalar(t reflect.Type) bool {
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return true
	}
	switch t.Kind() {
	case reflect.Pointer:
		return t.Elem().Kind() != reflect.Pointer && isScalar(t.Elem())
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// isLeaf reports whether t is a setting an environment override can set: a scalar or a list of scalars.
func isLeaf(t reflect.Type) bool {
	return isScalar(t) || (t.Kind() == reflect.Slice && isScalar(t.Elem()))
}

// isSection reports whether t is a struct holding further settings.
func isSection(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && !isScalar(t)
}

// isKeyedList reports whether t is a list of sections identified by their keyField.
func isKeyedList(t reflect.Type) bool {
	if t.Kind() != reflect.Slice || !isSection(t.Elem()) {
		return false
	}
	f, ok := fieldByYAMLName(t.Elem(), keyField)
	return ok && f.Type.Kind() == reflect.String
}

// keyOf returns the keyField value of an element of a keyed list.
func keyOf(elem reflect.Value) string {
	t := elem.Type()
	for i := range t.NumField() {
		if yamlName(t.Field(i)) == keyField {
			return elem.Field(i).String()
		}
	}
	return ""
}

// envToken is how a key or id appears in an environment variable name: upper case, "-" written as "_".
func envToken(s string) string {
	return strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
}

func joinPath(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}
