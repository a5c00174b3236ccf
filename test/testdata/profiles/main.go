// Command profiles is a small sample of a service that calls another one:
// GET /profiles/{id} fetches the user from the users Service ($USERS_URL),
// which a program under kloop reaches through kloop's outbound proxy
// (HTTP_PROXY), and answers a profile built from it. It listens on
// $HTTP_ADDR. The export test (test/intercept/export_test.go) runs it in
// place of the orders workload's program, whose pod env has USERS_URL.
package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"
)

// build marks which build answered; tests rewrite it in their copy.
const build = "v1"

func main() {
	users := os.Getenv("USERS_URL")
	client := &http.Client{Timeout: 10 * time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /profiles/{id}", func(w http.ResponseWriter, r *http.Request) {
		resp, err := client.Get(users + "/users/" + r.PathValue("id"))
		if err != nil {
			http.Error(w, "users service: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			http.Error(w, fmt.Sprintf("users service: %s", resp.Status), http.StatusBadGateway)
			return
		}
		var user struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&user); err != nil {
			http.Error(w, "users service: "+err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"id": user.ID, "displayName": strings.ToUpper(user.Name), "build": build,
		})
	})
	addr := os.Getenv("HTTP_ADDR")
	slog.Info("profiles listening", "addr", addr)
	if err := http.ListenAndServe(addr, mux); err != nil {
		slog.Error("serve", "err", err)
		os.Exit(1)
	}
}
