// Command server is the program the relaunch tests rebuild: it answers every
// request with its version and shuts down gracefully on SIGTERM, as a
// service deployed to Kubernetes does.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

const version = "v1"

func main() {
	srv := &http.Server{
		Addr: "127.0.0.1:" + os.Getenv("PORT"),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, version)
		}),
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		srv.Shutdown(context.Background())
	}()
	fmt.Println("serving", version)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
