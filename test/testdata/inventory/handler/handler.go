// Package handler serves the inventory sample's HTTP API: GET /items/{sku}
// answers how many of an item the warehouse has.
package handler

import (
	"encoding/json"
	"net/http"
)

// build marks which build answered; tests rewrite it in their copy.
const build = ""

// Config is what the handler needs from the pod's env.
type Config struct {
	Warehouse string
	Token     string
	Pod       string
}

var stock = map[string]int{"kb-1": 12, "mon-2": 3, "mouse-3": 40}

// New returns the inventory API.
func New(cfg Config) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{sku}", func(w http.ResponseWriter, r *http.Request) {
		sku := r.PathValue("sku")
		n, ok := stock[sku]
		if !ok {
			http.Error(w, "no item "+sku, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"sku": sku, "count": n, "warehouse": cfg.Warehouse,
			"tokenSet": cfg.Token != "", "servedBy": cfg.Pod, "build": build,
		})
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	return mux
}
