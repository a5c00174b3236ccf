// Command inventory is the second sample service of kloop's tests (see
// ../../../inventory.yaml): it takes its port, warehouse and token from the
// pod's env and serves the handler of package handler.
package main

import (
	"log/slog"
	"net/http"
	"os"

	"github.com/kloop/kloop/test/testdata/inventory/handler"
)

func main() {
	cfg := handler.Config{
		Warehouse: os.Getenv("WAREHOUSE"),
		Token:     os.Getenv("INVENTORY_TOKEN"),
		Pod:       os.Getenv("POD_NAME"),
	}
	port := os.Getenv("PORT")
	if port == "" || cfg.Token == "" {
		slog.Error("PORT (ConfigMap inventory-config) and INVENTORY_TOKEN (Secret inventory-secret) must be set")
		os.Exit(2)
	}
	slog.Info("inventory listening", "port", port, "warehouse", cfg.Warehouse, "pod", cfg.Pod)
	if err := http.ListenAndServe(":"+port, handler.New(cfg)); err != nil {
		slog.Error("serve", "err", err)
		os.Exit(1)
	}
}
