// Command orders is the sample "orders" service of kloop's sandbox and
// demo. It is configured the ways real services are: env from a ConfigMap
// (USERS_URL, GREETING) and a Secret (API_TOKEN), the pod's name from the
// downward API, and a catalog file from a mounted ConfigMap volume
// (CATALOG_FILE, read under $KLOOP_ROOT when kloop or the sandbox run it
// outside a container). It serves two ports:
//
//	HTTP_ADDR (:8080)   GET /orders/{id}: the order, with its user fetched from USERS_URL
//	ADMIN_ADDR (:9090)  GET /metrics, GET /config (what it was configured with; no secrets)
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

type order struct {
	ID     string `json:"id"`
	Item   string `json:"item"`
	UserID string `json:"userId"`
}

type config struct {
	Pod          string `json:"pod"`
	Namespace    string `json:"namespace"`
	UsersURL     string `json:"usersURL"`
	Greeting     string `json:"greeting"`
	TokenSHA256  string `json:"tokenSHA256"`
	CatalogFile  string `json:"catalogFile"`
	CatalogItems int    `json:"catalogItems"`
}

func main() {
	if err := run(); err != nil {
		slog.Error("orders", "err", err)
		os.Exit(1)
	}
}

func run() error {
	cfg := config{
		Pod:         os.Getenv("POD_NAME"),
		Namespace:   os.Getenv("POD_NAMESPACE"),
		UsersURL:    os.Getenv("USERS_URL"),
		Greeting:    os.Getenv("GREETING"),
		CatalogFile: os.Getenv("CATALOG_FILE"),
	}
	token := os.Getenv("API_TOKEN")
	if token == "" {
		return errors.New("API_TOKEN is not set (it comes from the orders-secret Secret)")
	}
	sum := sha256.Sum256([]byte(token))
	cfg.TokenSHA256 = hex.EncodeToString(sum[:])
	orders, err := loadCatalog(filepath.Join(os.Getenv("KLOOP_ROOT"), cfg.CatalogFile))
	if err != nil {
		return err
	}
	cfg.CatalogItems = len(orders)

	var served atomic.Int64
	client := &http.Client{Timeout: 5 * time.Second}
	app := http.NewServeMux()
	app.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		o, ok := orders[r.PathValue("id")]
		if !ok {
			http.Error(w, "no order "+r.PathValue("id"), http.StatusNotFound)
			return
		}
		user, err := fetchUser(r.Context(), client, cfg.UsersURL, o.UserID)
		if err != nil {
			http.Error(w, "users service: "+err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"order": o, "user": user, "greeting": cfg.Greeting, "servedBy": cfg.Pod})
	})
	app.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })

	admin := http.NewServeMux()
	admin.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "orders_requests_total %d\n", served.Load())
	})
	admin.HandleFunc("GET /config", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(cfg)
	})

	errc := make(chan error, 2)
	for _, s := range []struct {
		env, def string
		h        http.Handler
	}{{"HTTP_ADDR", ":8080", app}, {"ADMIN_ADDR", ":9090", admin}} {
		addr := os.Getenv(s.env)
		if addr == "" {
			addr = s.def
		}
		slog.Info("orders listening", "addr", addr, "pod", cfg.Pod)
		go func() { errc <- http.ListenAndServe(addr, s.h) }()
	}
	return <-errc
}

func loadCatalog(path string) (map[string]order, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read catalog (mounted from the orders-config ConfigMap): %w", err)
	}
	var list []order
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("parse catalog %s: %w", path, err)
	}
	byID := map[string]order{}
	for _, o := range list {
		byID[o.ID] = o
	}
	return byID, nil
}

func fetchUser(ctx context.Context, client *http.Client, base, id string) (map[string]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/users/"+id, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	var user map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&user); err != nil {
		return nil, fmt.Errorf("decode user: %w", err)
	}
	return user, nil
}
