package intercept

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Where a cluster admin sets the agent image once for the whole cluster:
// key agentImage of ConfigMap kloop-config in namespace kloop-system
// (written by `kloop pool agent-image REF` or `kloop pool create
// --agent-image REF`), readable by every authenticated user through Role
// kloop-config-reader.
const (
	ConfigNamespace     = "kloop-system"
	ConfigMapName       = "kloop-config"
	ConfigKeyAgentImage = "agentImage"
	configReaderRole    = "kloop-config-reader"
)

// Sources of the agent image, in precedence order (ImageChoice.Source).
const (
	SourceEnv       = "KLOOP_AGENT_IMAGE"
	SourceWorkspace = ".kloop.yaml agentImage"
	SourceCluster   = "ConfigMap kloop-system/kloop-config"
	SourceDefault   = "kloop's default (its own version as the tag)"
)

// ImageOptions are the settings that may name the agent image.
type ImageOptions struct {
	// Env is $KLOOP_AGENT_IMAGE of the daemon.
	Env string
	// Workspace is agentImage of the workspace's .kloop.yaml.
	Workspace string
}

// ImageChoice is the agent image kloop injects and which setting chose it.
type ImageChoice struct {
	Ref    string `json:"ref"`
	Source string `json:"source"`
	// Note says what went wrong reading a setting that was skipped (the
	// cluster's ConfigMap was unreadable), "" when nothing did.
	Note string `json:"note,omitempty"`
}

// ResolveImage picks the agent image: KLOOP_AGENT_IMAGE, else the
// workspace's agentImage, else the cluster's ConfigMap, else
// DefaultImage(). A ConfigMap that is missing or that the user may not read
// falls through to the default (Note says which); other API errors fail.
func ResolveImage(ctx context.Context, cs kubernetes.Interface, opts ImageOptions) (ImageChoice, error) {
	if opts.Env != "" {
		return ImageChoice{Ref: opts.Env, Source: SourceEnv}, ValidateImageRef(opts.Env)
	}
	if opts.Workspace != "" {
		return ImageChoice{Ref: opts.Workspace, Source: SourceWorkspace}, ValidateImageRef(opts.Workspace)
	}
	def := ImageChoice{Ref: DefaultImage(), Source: SourceDefault}
	if cs == nil {
		return def, nil
	}
	cm, err := cs.CoreV1().ConfigMaps(ConfigNamespace).Get(ctx, ConfigMapName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return def, nil
	case apierrors.IsForbidden(err):
		def.Note = fmt.Sprintf("not allowed to read ConfigMap %s/%s, where a cluster admin sets the agent image; ask them to run `kloop pool agent-image REF` (which lets every user read it)", ConfigNamespace, ConfigMapName)
		return def, nil
	case err != nil:
		return def, fmt.Errorf("read the cluster's agent image (ConfigMap %s/%s): %w", ConfigNamespace, ConfigMapName, err)
	}
	ref := strings.TrimSpace(cm.Data[ConfigKeyAgentImage])
	if ref == "" {
		return def, nil
	}
	if err := ValidateImageRef(ref); err != nil {
		return def, fmt.Errorf("ConfigMap %s/%s key %s: %w", ConfigNamespace, ConfigMapName, ConfigKeyAgentImage, err)
	}
	return ImageChoice{Ref: ref, Source: SourceCluster}, nil
}

// ImageRefPattern matches an image reference as the container runtime
// parses it (distribution/reference): an optional registry host[:port], a
// lower-case path, then a tag and/or a sha256 digest. config's agentImage
// pattern is the same (its tests check).
const ImageRefPattern = `^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$`

var imageRef = regexp.MustCompile(ImageRefPattern)

// ValidateImageRef checks that ref is an image reference a kubelet can
// pull, with a message that says how to write one.
func ValidateImageRef(ref string) error {
	if ref == "" {
		return errors.New("the agent image reference is empty: give one such as registry.example.com/kloop/agent:v1.2.3")
	}
	if len(ref) > 4096 || !imageRef.MatchString(ref) {
		return fmt.Errorf("agent image %q is not an image reference: write REGISTRY/PATH:TAG or REGISTRY/PATH@sha256:DIGEST, with a lower-case path, e.g. registry.example.com/kloop/agent:v1.2.3", ref)
	}
	return nil
}

// SetClusterImage records ref as the cluster's agent image (ConfigMap
// kloop-config in kloop-system, created or updated), and lets every
// authenticated user read that one ConfigMap: the reference is not a
// secret, and every developer's kloop must see it.
func SetClusterImage(ctx context.Context, cs kubernetes.Interface, ref string) error {
	if err := ValidateImageRef(ref); err != nil {
		return err
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ConfigNamespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ConfigNamespace, Labels: map[string]string{"kloop.dev/managed-by": "kloop"}}}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", ConfigNamespace, err)
		}
	} else if err != nil {
		return fmt.Errorf("get namespace %s: %w", ConfigNamespace, err)
	}
	cms := cs.CoreV1().ConfigMaps(ConfigNamespace)
	cm, err := cms.Get(ctx, ConfigMapName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Labels: map[string]string{"kloop.dev/managed-by": "kloop"}},
			Data:       map[string]string{ConfigKeyAgentImage: ref},
		}
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create ConfigMap %s/%s: %w", ConfigNamespace, ConfigMapName, err)
		}
	case err != nil:
		return fmt.Errorf("get ConfigMap %s/%s: %w", ConfigNamespace, ConfigMapName, err)
	default:
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[ConfigKeyAgentImage] = ref
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update ConfigMap %s/%s: %w", ConfigNamespace, ConfigMapName, err)
		}
	}
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: configReaderRole, Namespace: ConfigNamespace},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"},
			ResourceNames: []string{ConfigMapName}, Verbs: []string{"get"}}},
	}
	if _, err := cs.RbacV1().Roles(ConfigNamespace).Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create Role %s/%s: %w", ConfigNamespace, configReaderRole, err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: configReaderRole, Namespace: ConfigNamespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: configReaderRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:authenticated"}},
	}
	if _, err := cs.RbacV1().RoleBindings(ConfigNamespace).Create(ctx, rb, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create RoleBinding %s/%s: %w", ConfigNamespace, configReaderRole, err)
	}
	return nil
}

// ClusterImage reads the agent image the cluster's admin set, "" when none.
func ClusterImage(ctx context.Context, cs kubernetes.Interface) (string, error) {
	cm, err := cs.CoreV1().ConfigMaps(ConfigNamespace).Get(ctx, ConfigMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("get ConfigMap %s/%s: %w", ConfigNamespace, ConfigMapName, err)
	}
	return cm.Data[ConfigKeyAgentImage], nil
}
