package standin

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// Pull makes the runner pull images from registries, as a kubelet does,
// instead of standing them in with local builds: how the sandbox runs an
// agent image that `kloop agent-image push` published. The image's
// entrypoint binary is extracted from its layers and run on this machine,
// so it must be a static executable of the node's platform.
type Pull struct {
	// Registries are the registry hosts ("127.0.0.1:5000") whose images
	// are pulled; images of other registries use the Images table.
	Registries []string
	// Check vets a pulled image's config before it runs (the agent
	// image's contract: agentimage.Verify); nil accepts any.
	Check func(*v1.ConfigFile) error
	// Remote are extra options for the registry client.
	Remote []remote.Option
}

func (p Pull) pulls(image string) bool {
	ref, err := name.ParseReference(image)
	return err == nil && slices.Contains(p.Registries, ref.Context().RegistryStr())
}

// pulledImage is an image resolved and unpacked for a container.
type pulledImage struct {
	// Binary is the image's entrypoint, extracted.
	Binary string
	// ImageID is REPOSITORY@DIGEST of what the reference resolved to (the
	// index for a multi-platform image), as a kubelet reports it.
	ImageID string
	// Cmd is the image's default command, the container's args when the
	// pod spec gives neither command nor args.
	Cmd []string
}

// pullFailure is why a container's image could not be had: the kubelet's
// waiting reason and message.
type pullFailure struct {
	container, image string
	// reason is ErrImagePull, InvalidImageName or CreateContainerError.
	reason, message string
}

func (f *pullFailure) Error() string {
	return fmt.Sprintf("container %s: %s: %s", f.container, f.reason, f.message)
}

// puller pulls and unpacks images once per manifest digest.
type puller struct {
	opts Pull
	dir  string
	mu   sync.Mutex
}

// pull resolves image (tag to digest), picks the manifest of plat,
// vets its config and extracts its entrypoint binary.
func (p *puller) pull(ctx context.Context, container, image string, plat v1.Platform) (*pulledImage, *pullFailure) {
	fail := func(reason, format string, args ...any) (*pulledImage, *pullFailure) {
		return nil, &pullFailure{container: container, image: image, reason: reason, message: fmt.Sprintf(format, args...)}
	}
	ref, err := name.ParseReference(image, name.StrictValidation)
	if err != nil {
		return fail("InvalidImageName", "Failed to apply default image tag %q: couldn't parse image name %q: %v", image, image, err)
	}
	ropts := append(slices.Clone(p.opts.Remote), remote.WithContext(ctx))
	desc, err := remote.Get(ref, ropts...)
	if err != nil {
		return fail("ErrImagePull", "failed to pull and unpack image %q: failed to resolve reference %q: %v", image, image, err)
	}
	imageID := ref.Context().Name() + "@" + desc.Digest.String()
	var img v1.Image
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return fail("ErrImagePull", "failed to pull and unpack image %q: %v", image, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return fail("ErrImagePull", "failed to pull and unpack image %q: %v", image, err)
		}
		var have []string
		for _, d := range im.Manifests {
			if d.Platform == nil {
				continue
			}
			have = append(have, d.Platform.String())
			if img == nil && d.Platform.OS == plat.OS && d.Platform.Architecture == plat.Architecture {
				if img, err = idx.Image(d.Digest); err != nil {
					return fail("ErrImagePull", "failed to pull and unpack image %q: %v", image, err)
				}
			}
		}
		if img == nil {
			return fail("ErrImagePull", "failed to pull and unpack image %q: no match for platform %s in manifest (it has %s): not found", image, plat, strings.Join(have, ", "))
		}
	} else if img, err = desc.Image(); err != nil {
		return fail("ErrImagePull", "failed to pull and unpack image %q: %v", image, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fail("ErrImagePull", "failed to pull and unpack image %q: config: %v", image, err)
	}
	if cf.OS != plat.OS || cf.Architecture != plat.Architecture {
		return fail("ErrImagePull", "failed to pull and unpack image %q: image is for %s/%s, the node is %s", image, cf.OS, cf.Architecture, plat)
	}
	if p.opts.Check != nil {
		if err := p.opts.Check(cf); err != nil {
			return fail("CreateContainerError", "image %q: %v", image, err)
		}
	}
	if len(cf.Config.Entrypoint) == 0 || !path.IsAbs(cf.Config.Entrypoint[0]) {
		return fail("CreateContainerError", "image %q has no absolute entrypoint (%q): the sandbox runs an image's entrypoint binary", image, cf.Config.Entrypoint)
	}
	manifest, err := img.Digest()
	if err != nil {
		return fail("ErrImagePull", "failed to pull and unpack image %q: %v", image, err)
	}
	bin, err := p.unpack(img, manifest, cf.Config.Entrypoint[0])
	if err != nil {
		return fail("ErrImagePull", "failed to pull and unpack image %q: %v", image, err)
	}
	return &pulledImage{Binary: bin, ImageID: imageID, Cmd: cf.Config.Cmd}, nil
}

// unpack extracts file from img's flattened layers into p.dir, once per
// manifest digest; written aside and renamed, so a concurrent runner
// never runs half a file.
func (p *puller) unpack(img v1.Image, manifest v1.Hash, file string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := filepath.Join(p.dir, manifest.Hex[:16], filepath.FromSlash(strings.TrimPrefix(file, "/")))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		return "", err
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	want := strings.TrimPrefix(path.Clean(file), "/")
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("the image has no entrypoint file %s", file)
		}
		if err != nil {
			return "", fmt.Errorf("read layers: %w", err)
		}
		if strings.TrimPrefix(path.Clean("/"+h.Name), "/") != want {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return "", fmt.Errorf("entrypoint %s is not a regular file in the image (type %q)", file, h.Typeflag)
		}
		tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o700)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, out)
		}
		if err != nil {
			os.Remove(tmp)
			return "", fmt.Errorf("extract %s: %w", file, err)
		}
		return out, nil
	}
}

// nodePlatform is the platform the pod's node reports, the one a kubelet
// pulls for; this machine's when the node does not say.
func (s *Runner) nodePlatform(ctx context.Context, pod *corev1.Pod) v1.Platform {
	plat := v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if pod.Spec.NodeName == "" {
		return plat
	}
	node, err := s.opts.Client.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		return plat
	}
	if ni := node.Status.NodeInfo; ni.OperatingSystem != "" && ni.Architecture != "" {
		plat = v1.Platform{OS: ni.OperatingSystem, Architecture: ni.Architecture}
	}
	return plat
}

// pullImages pulls the images of the pod's containers that Options.Pull
// covers, keyed by container name.
func (s *Runner) pullImages(ctx context.Context, pod *corev1.Pod) (map[string]*pulledImage, *pullFailure) {
	pulled := map[string]*pulledImage{}
	var plat *v1.Platform
	for _, c := range pod.Spec.Containers {
		if !s.opts.Pull.pulls(c.Image) {
			continue
		}
		if plat == nil {
			p := s.nodePlatform(ctx, pod)
			plat = &p
		}
		img, fail := s.puller.pull(ctx, c.Name, c.Image, *plat)
		if fail != nil {
			return nil, fail
		}
		pulled[c.Name] = img
	}
	return pulled, nil
}

// Image pull back-off, as the kubelet's: 10s doubling up to 5 minutes.
const (
	pullBackoffInitial = 10 * time.Second
	pullBackoffMax     = 5 * time.Minute
)

// pullBackoff is the wait after the n-th failed pull in a row (n >= 1).
func pullBackoff(n int) time.Duration {
	return min(pullBackoffInitial<<min(n-1, 6), pullBackoffMax)
}

// pullRetry is a pod's image-pull failures and when to try again.
type pullRetry struct {
	failures int
	// backoffAt: the status turns from ErrImagePull to ImagePullBackOff;
	// retryAt: the next pull.
	backoffAt, retryAt time.Time
	backoffShown       bool
	last               *pullFailure
}

// notePullFailure reports the failed attempt and schedules the next one,
// counting from the pod's previous run prev (nil the first time).
func (s *Runner) notePullFailure(ctx context.Context, prev, pr *podRun, fail *pullFailure) {
	r := &pullRetry{last: fail}
	if prev != nil && prev.pull != nil {
		r.failures = prev.pull.failures
	}
	r.failures++
	delay := pullBackoff(r.failures)
	now := time.Now()
	r.backoffAt, r.retryAt = now.Add(delay/2), now.Add(delay)
	pr.pull = r
	if fail.reason != "ErrImagePull" {
		// Not a pull that may work later: no back-off state, only retries.
		r.backoffShown = true
	}
	s.reportImagePullFailure(ctx, pr.pod, fail.container, fail.image, fail.reason, fail.message)
}

// pullRetryDue moves a pod whose pull failed to ImagePullBackOff when it
// is time, and says whether its next pull is due. Pods without a failed
// pull are never retried.
func (s *Runner) pullRetryDue(ctx context.Context, pr *podRun) bool {
	r := pr.pull
	if r == nil {
		return false
	}
	now := time.Now()
	if !r.backoffShown && !now.Before(r.backoffAt) {
		r.backoffShown = true
		s.reportImagePullFailure(ctx, pr.pod, r.last.container, r.last.image, "ImagePullBackOff",
			fmt.Sprintf("Back-off pulling image %q: ErrImagePull: %s", r.last.image, r.last.message))
	}
	return !now.Before(r.retryAt)
}

// reportImagePullFailure is the one place the runner tells the API that a
// container's image could not be had, as a kubelet does: the container
// waiting with reason (ErrImagePull for a failed attempt, ImagePullBackOff
// while waiting to retry, InvalidImageName, CreateContainerError) and the
// kubelet's message, the pod not Ready, and a Warning event on the pod.
// The phase stays Running: kwok would otherwise start the pod again.
func (s *Runner) reportImagePullFailure(ctx context.Context, pod *corev1.Pod, container, image, reason, message string) {
	s.opts.Logf("pod %s/%s container %s: %s: %s", pod.Namespace, pod.Name, container, reason, message)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := s.opts.Client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		setContainerStatus(cur, container, func(cs *corev1.ContainerStatus) {
			cs.Image = image
			cs.ImageID = ""
			cs.Ready = false
			cs.Started = ptrTo(false)
			cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}
		})
		notReady := fmt.Sprintf("containers with unready status: [%s]", container)
		for i := range cur.Status.Conditions {
			c := &cur.Status.Conditions[i]
			if c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
				if c.Status != corev1.ConditionFalse {
					c.LastTransitionTime = metav1.Now()
				}
				c.Status, c.Reason, c.Message = corev1.ConditionFalse, "ContainersNotReady", notReady
			}
		}
		_, err = s.opts.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		s.opts.Logf("report %s of pod %s/%s: %v", reason, pod.Namespace, pod.Name, err)
	}
	events := [][2]string{{"BackOff", message}}
	if reason != "ImagePullBackOff" {
		events = [][2]string{{"Failed", fmt.Sprintf("Failed to pull image %q: %s", image, message)}, {"Failed", "Error: " + reason}}
	}
	for _, e := range events {
		s.podEvent(ctx, pod, container, corev1.EventTypeWarning, e[0], e[1])
	}
}

// reportImageID records what a pulled container runs, as a kubelet does
// once the container started: the resolved REPOSITORY@DIGEST in its
// status's imageID; after failed pulls, the container running again and
// the pod Ready once all its containers are.
func (s *Runner) reportImageID(ctx context.Context, pod *corev1.Pod, container, image, imageID string) {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := s.opts.Client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		setContainerStatus(cur, container, func(cs *corev1.ContainerStatus) {
			cs.Image, cs.ImageID = image, imageID
			if cs.State.Waiting != nil {
				// A retry after a failed pull: undo what reportImagePullFailure set.
				cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}
				cs.Ready, cs.Started = true, ptrTo(true)
			}
		})
		ready := true
		for _, cs := range cur.Status.ContainerStatuses {
			ready = ready && cs.Ready
		}
		for i := range cur.Status.Conditions {
			c := &cur.Status.Conditions[i]
			if ready && c.Status == corev1.ConditionFalse && c.Reason == "ContainersNotReady" &&
				(c.Type == corev1.PodReady || c.Type == corev1.ContainersReady) {
				c.Status, c.Reason, c.Message, c.LastTransitionTime = corev1.ConditionTrue, "", "", metav1.Now()
			}
		}
		_, err = s.opts.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		s.opts.Logf("record the image of pod %s/%s container %s: %v", pod.Namespace, pod.Name, container, err)
	}
	s.podEvent(ctx, pod, container, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Successfully pulled image %q (%s)", image, imageID))
}

func setContainerStatus(pod *corev1.Pod, container string, edit func(*corev1.ContainerStatus)) {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == container {
			edit(&pod.Status.ContainerStatuses[i])
			return
		}
	}
	cs := corev1.ContainerStatus{Name: container}
	edit(&cs)
	pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, cs)
}

// podEvent records an event on the pod from the "kubelet", the way
// `kubectl describe pod` shows image pulls.
func (s *Runner) podEvent(ctx context.Context, pod *corev1.Pod, container, typ, reason, message string) {
	suffix := make([]byte, 8)
	_, _ = rand.Read(suffix)
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name + "." + hex.EncodeToString(suffix), Namespace: pod.Namespace},
		InvolvedObject: corev1.ObjectReference{
			Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
			FieldPath: "spec.containers{" + container + "}",
		},
		Reason: reason, Message: message, Type: typ, Count: 1,
		Source:         corev1.EventSource{Component: "kubelet", Host: pod.Spec.NodeName},
		FirstTimestamp: now, LastTimestamp: now,
		ReportingController: "kubelet", ReportingInstance: pod.Spec.NodeName,
	}
	if _, err := s.opts.Client.CoreV1().Events(pod.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		s.opts.Logf("event %s on pod %s/%s: %v", reason, pod.Namespace, pod.Name, err)
	}
}

func ptrTo[T any](v T) *T { return &v }
