// Command users is the sample "users" service of kloop's sandbox and demo:
// it serves GET /users/{id} as JSON. The orders sample calls it.
package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
)

var people = map[string]string{"1": "Ada Lovelace", "2": "Grace Hopper", "3": "Ken Thompson"}

func main() {
	addr := os.Getenv("HTTP_ADDR")
	if addr == "" {
		addr = ":8080"
	}
	pod := os.Getenv("POD_NAME")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		name, ok := people[id]
		if !ok {
			http.Error(w, "no user "+id, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"id": id, "name": name, "servedBy": pod})
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	slog.Info("users listening", "addr", addr, "pod", pod)
	if err := http.ListenAndServe(addr, mux); err != nil {
		slog.Error("serve", "err", err)
		os.Exit(1)
	}
}
