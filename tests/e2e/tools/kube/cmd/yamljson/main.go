// yamljson reads YAML exactly as Kubernetes clients do (kubectl, Helm's kube client): the stream
// is split and converted to JSON by k8s.io/apimachinery's YAMLOrJSONDecoder, which uses
// sigs.k8s.io/yaml and so go-yaml v2's YAML 1.1 scalar rules (octal 0644, yes/on booleans, ...).
// It is test tooling for hookguard: the Rust side must read YAML the same way.
//
// Input on stdin: a JSON array of YAML texts. Output on stdout: a JSON array with, for each text,
// either {"docs": [<document as JSON>, ...]} (every document of the stream, null for empty ones)
// or {"error": "<message>"} when the stream cannot be read.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/util/yaml"
)

type result struct {
	Docs  []json.RawMessage `json:"docs,omitempty"`
	Error string            `json:"error,omitempty"`
}

func decode(text string) result {
	d := yaml.NewYAMLOrJSONDecoder(bytes.NewBufferString(text), 4096)
	docs := []json.RawMessage{}
	for {
		var raw json.RawMessage
		err := d.Decode(&raw)
		if errors.Is(err, io.EOF) {
			return result{Docs: docs}
		}
		if err != nil {
			return result{Error: err.Error()}
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 {
			raw = json.RawMessage("null")
		}
		docs = append(docs, raw)
	}
}

func main() {
	var texts []string
	if err := json.NewDecoder(os.Stdin).Decode(&texts); err != nil {
		fmt.Fprintln(os.Stderr, "yamljson: stdin must be a JSON array of strings:", err)
		os.Exit(2)
	}
	out := make([]result, 0, len(texts))
	for _, t := range texts {
		out = append(out, decode(t))
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "yamljson:", err)
		os.Exit(1)
	}
}
