using System;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// The modules of a wrapped model by path (<c>named_modules()</c> names, root <c>""</c>), with a hook point
    /// each; TorchHooks' dispatching hooks go on all of them once the tree is armed (something registered on one
    /// of its modules, see <see cref="Dispatchers"/>). Re-walked when a path is not found, so modules registered
    /// after wrapping are picked up.
    /// </summary>
    internal sealed class ModuleTree
    {
        private readonly torch.nn.Module _root;
        private Dictionary<string, torch.nn.Module> _byPath = new();
        private List<HookPoint> _nodes = new();
        private volatile bool _armed;

        /// <summary>Whether the dispatchers are on every module of the tree (and go on modules added to it).</summary>
        public bool IsArmed => _armed;

        /// <summary>Arms the tree: attaches the dispatchers to all its modules. The caller holds <see cref="Dispatchers.Gate"/>.</summary>
        internal void ArmLocked()
        {
            if (_armed) return;
            _armed = true;
            AttachAllLocked();
        }

        private void AttachAllLocked()
        {
            foreach (var node in _nodes) node.AttachLocked();
        }

        public ModuleTree(torch.nn.Module root)
        {
            _root = root;
            Id = Dispatchers.Register(this);
            Refresh();
        }

        /// <summary>The tree's number among all trees of the process (hook points name their trees by it).</summary>
        public int Id { get; }

        public IReadOnlyCollection<string> Paths => _byPath.Keys;

        /// <summary>Walks the tree (PyTorch order: root, then <c>named_modules()</c>, shared modules once) and installs hook points.</summary>
        public void Refresh()
        {
            var byPath = new Dictionary<string, torch.nn.Module>();
            var nodes = new List<HookPoint>();
            var seen = new HashSet<torch.nn.Module>(ReferenceEqualityComparer.Instance);
            foreach (var (name, raw) in new[] { ("", _root) }.Concat(_root.named_modules()))
            {
                var module = raw is IHookedModule facade ? facade.Unwrap() : raw;
                if (!seen.Add(module)) continue;   // a shared module keeps its first name, as in PyTorch
                byPath[name] = module;
                if (Dispatchers.GetOrCreate(module, name, this) is { } node) nodes.Add(node);
            }
            _byPath = byPath;
            lock (Dispatchers.Gate)
            {
                _nodes = nodes;
                // Armed already, or a module of it has work (hooks registered before this tree was made): attach all.
                if (_armed || nodes.Exists(n => n.IsActive)) { _armed = true; AttachAllLocked(); }
            }
        }

        /// <summary>The hook points of every module that has a forward, in <see cref="Paths"/> order (no ModuleList/ModuleDict).</summary>
        public IReadOnlyList<HookPoint> HookPoints()
        {
            var points = new List<HookPoint>();
            foreach (var (path, module) in _byPath)
                if (Dispatchers.GetOrCreate(module, path) is { } point) points.Add(point);
            return points;
        }

        public HookPoint this[string path]
        {
            get
            {
                if (path is null) throw new ArgumentNullException(nameof(path), "Pass a module path such as \"encoder.0\"; the root is \"\".");
                if (!_byPath.ContainsKey(path)) Refresh();
                if (!_byPath.TryGetValue(path, out var module))
                    throw new KeyNotFoundException($"No module at path '{path}'. Nearest valid paths: {string.Join(", ", Nearest(path).Select(p => $"'{p}'"))}. (All paths: named_modules() names; the root is \"\".)");
                return Dispatchers.GetOrCreate(module, path)
                    ?? throw new ArgumentException($"Module '{path}' ({Dispatchers.Name(module.GetType())}) has no forward, so hooks on it would never fire (as in PyTorch, where they silently don't). Hook its children instead: {string.Join(", ", _byPath.Keys.Where(k => k.StartsWith(path + ".", StringComparison.Ordinal) && k.IndexOf('.', path.Length + 1) < 0).Take(5).Select(p => $"'{p}'"))}.", nameof(path));
            }
        }

        /// <summary>The hook point of <paramref name="module"/> (or of the model a facade wraps), found by reference.</summary>
        public HookPoint PointOf(torch.nn.Module module)
        {
            if (module is null) throw new ArgumentNullException(nameof(module), "Pass a module of the wrapped model, e.g. model.encoder.");
            if (module is IHookedModule facade) module = facade.Unwrap();
            string? path = Find(module);
            if (path is null) { Refresh(); path = Find(module); }
            if (path is null)
                throw new ArgumentException($"The {module.GetType().Name} passed is not a module of this wrapped model (its modules: named_modules() of the model). Pass one of its submodules, or wrap that module itself with WithHooks().", nameof(module));
            return this[path];
        }

        private string? Find(torch.nn.Module module)
        {
            foreach (var (path, m) in _byPath)
                if (ReferenceEquals(m, module)) return path;
            return null;
        }

        /// <summary>Up to three paths closest to <paramref name="path"/> by edit distance.</summary>
        public IEnumerable<string> Nearest(string path)
            => _byPath.Keys.OrderBy(p => Distance(p, path)).ThenBy(p => p, StringComparer.Ordinal).Take(3);

        private static int Distance(string a, string b)
        {
            var prev = new int[b.Length + 1];
            var cur = new int[b.Length + 1];
            for (int j = 0; j <= b.Length; j++) prev[j] = j;
            for (int i = 1; i <= a.Length; i++)
            {
                cur[0] = i;
                for (int j = 1; j <= b.Length; j++)
                    cur[j] = Math.Min(Math.Min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
                (prev, cur) = (cur, prev);
            }
            return prev[b.Length];
        }
    }
}
