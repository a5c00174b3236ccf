// Command agentimage builds the kloop traffic-agent image (the `kloop agent`
// subcommand of ./cmd/kloop) without Docker and without a registry, and
// writes it to a tarball that is both an OCI image layout and a
// `docker load` archive.
//
// The image is built by ko's own build pipeline (github.com/google/ko/pkg/build,
// the code behind `ko build`), used as a library so the base image can be
// supplied in-process: an empty ("scratch") image made here with
// go-containerregistry. The ko CLI can only take its base image from a
// registry or from a Docker daemon (ko.local), neither of which exists here.
//
// Usage, from anywhere inside the repository (scripts/agent-image.sh wraps it):
//
//	go -C tools/agentimage run . [--image REF] [--out FILE] [--version V]
//
// The image reference is --image, else $KLOOP_AGENT_IMAGE, else the value of
// intercept.DefaultImage() (kube/intercept/inject.go) for the version being
// built.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("agentimage: ")
	log.SetOutput(quietKo{os.Stderr})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// quietKo drops ko's "git is in a dirty state" log message: ko computes
// git facts for ldflags templates on every build and logs the whole of
// `git status` when the tree is dirty, which is the normal case while
// developing. The image's revision label comes from gitRevision.
type quietKo struct{ w io.Writer }

func (q quietKo) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte("git is in a dirty state")) {
		return len(p), nil
	}
	return q.w.Write(p)
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("agentimage", flag.ContinueOnError)
	var o Options
	fs.StringVar(&o.Image, "image", "", "image reference to tag the image with (default $KLOOP_AGENT_IMAGE, else intercept.DefaultImage())")
	fs.StringVar(&o.Out, "out", "", "output tarball (default <repo>/bin/kloop-agent-image.tar)")
	fs.StringVar(&o.Dir, "dir", "", "root of the kloop repository (default: found from the working directory)")
	fs.StringVar(&o.Version, "version", os.Getenv("KLOOP_VERSION"), "version linked into the binary (main.version, intercept.Version) and the image label; sets the default tag (env KLOOP_VERSION)")
	fs.StringVar(&o.Platform, "platform", DefaultPlatform, "os/arch of the image")
	fs.StringVar(&o.User, "user", DefaultUser, "user the image runs as")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.Image == "" {
		o.Image = os.Getenv("KLOOP_AGENT_IMAGE")
	}
	if o.Dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		if o.Dir, err = FindRepo(wd); err != nil {
			return err
		}
	}
	if o.Out == "" {
		o.Out = filepath.Join(o.Dir, "bin", "kloop-agent-image.tar")
	}
	res, err := Build(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n  image   %s\n  digest  %s\n  size    %.1f MB (compressed layers %.1f MB)\n  load    docker load -i %[1]s  |  kind load image-archive %[1]s\n",
		res.Path, DockerTag(res.Ref), res.Digest, float64(res.FileSize)/1e6, float64(res.LayerBytes)/1e6)
	return nil
}
