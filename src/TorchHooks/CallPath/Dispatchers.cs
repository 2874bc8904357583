using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Threading;
using TorchSharp;
using static TorchSharp.torch.nn;

namespace TorchHooks
{
    /// <summary>
    /// The bridge from TorchSharp's <c>call</c> to the call path: every module of a wrapped tree gets a
    /// <see cref="HookPoint"/> when it is wrapped, and TorchHooks' single TorchSharp pre-hook/post-hook pair
    /// (the dispatchers) once something on the call path can have work for it — "nothing registered, nothing paid".
    /// </summary>
    /// <remarks>
    /// <para>When the dispatchers are attached (<see cref="Arm"/>): on every module of a tree as soon as a hook,
    /// precision policy or backward hook is registered on any of its modules; on every module of every tree while
    /// something is active everywhere (a global hook, a tracer, a listener); never removed after. Until then a
    /// wrapped model's modules run exactly as TorchSharp's (no hook in their dictionaries), and wrapping costs a
    /// node per module. Whole trees rather than single modules, so that a call that threw and was caught inside a
    /// parent's forward is still finished before the next module of the tree runs (see <see cref="CallStack"/>).</para>
    /// <para>How: TorchSharp keeps a module's hooks in a <c>Dictionary</c> that its <c>call</c> enumerates;
    /// changing it while another thread's <c>call</c> enumerates it would break that call. The dispatchers are
    /// therefore added copy-on-write (<see cref="HookDictionaries"/>): a new dictionary with the dispatcher first
    /// and the module's own TorchSharp hooks after, swapped in by one reference write. A call already under way
    /// keeps the dictionary it read; a call whose pre-hooks ran before the swap and post-hooks after it is seen
    /// by the call path as one that began with nothing active (as when a hook is added mid-call).</para>
    /// <para>One creator/attacher pair per TorchSharp forward arity (1–6 inputs, generated), bound by reflection once
    /// per closed module type and then called as delegates; each turns the inputs into one value (the input, or a
    /// tuple of the inputs) for the call path. The fast-path checks (of <see cref="CallPath{TArgs,TResult}.BeforeForward"/>)
    /// are repeated inline in the dispatchers, so a call with no hook on it costs two flag reads and two
    /// thread-static reads (the pre-hook also enters the call path while frames are open on the thread, to finish
    /// calls that threw and were caught).</para>
    /// </remarks>
    internal static partial class Dispatchers
    {
        private static readonly ConditionalWeakTable<torch.nn.Module, HookPoint> s_points = new();
        private static readonly object s_gate = new();
        private static bool s_armedEverywhere;

        /// <summary>Creates a module's hook point (a generated CreateN, bound once per type).</summary>
        private delegate HookPoint Creator(torch.nn.Module module, string path, string signature, Action<HookPoint> attach);

        /// <summary>Per module type: its creator, attacher and signature, or no creator (no forward). Built once per type.</summary>
        private static readonly ConcurrentDictionary<Type, (Creator? Create, Action<HookPoint>? Attach, string Signature)> s_types = new();

        /// <summary>
        /// The hook point of <paramref name="module"/>, created the first time (with the dispatchers attached if
        /// <paramref name="tree"/> is armed or something is active everywhere). Returns null for modules without a
        /// forward (ModuleList, ModuleDict, ParameterList...).
        /// </summary>
        public static HookPoint? GetOrCreate(torch.nn.Module module, string path, ModuleTree? tree = null)
        {
            if (s_points.TryGetValue(module, out var existing) && tree is null) return existing;
            var (create, attach, signature) = s_types.GetOrAdd(module.GetType(), s_bind);
            if (create is null) return null;
            lock (s_gate)
            {
                if (!s_points.TryGetValue(module, out var point))
                {
                    point = create(module, path, signature, attach!);
                    s_points.Add(module, point);
                }
                if (tree is not null) point.AddTree(tree.Id);
                if (s_armedEverywhere || tree is { IsArmed: true }) point.AttachLocked();   // (an active node is attached already: Arm)
                return point;
            }
        }

        /// <summary>
        /// <paramref name="node"/> has work: attaches the dispatchers to it and to every module of each tree it was
        /// wrapped in (called by <see cref="HookPoint.Recompute"/>).
        /// </summary>
        public static void Arm(HookPoint node)
        {
            lock (s_gate)
            {
                node.AttachLocked();
                foreach (var id in node.TreeIds())
                    if (s_trees.TryGetValue(id, out var weak) && weak.TryGetTarget(out var tree)) tree.ArmLocked();
            }
        }

        /// <summary>
        /// Whether something is active everywhere now. On: attaches the dispatchers to every module wrapped so far
        /// and to every module wrapped while it stays on. Off: modules wrapped from now on start bare again
        /// (those attached keep their dispatchers).
        /// </summary>
        public static void ArmEverywhere(bool on)
        {
            lock (s_gate)
            {
                if (on == s_armedEverywhere) return;
                s_armedEverywhere = on;
                if (on)
                    foreach (var entry in s_points) entry.Value.AttachLocked();
            }
        }

        // Every tree made so far, by id, weakly (one weak reference per tree; collected ones are pruned as the table grows).
        private static readonly Dictionary<int, WeakReference<ModuleTree>> s_trees = new();
        private static int s_nextTreeId = -1;
        private static int s_pruneAt = 64;

        /// <summary>Registers a new tree; returns its id.</summary>
        public static int Register(ModuleTree tree)
        {
            lock (s_gate)
            {
                if (s_trees.Count >= s_pruneAt)
                {
                    foreach (var (id, weak) in s_trees)
                        if (!weak.TryGetTarget(out _)) s_trees.Remove(id);
                    s_pruneAt = Math.Max(64, s_trees.Count * 2);
                }
                int treeId = ++s_nextTreeId;
                s_trees.Add(treeId, new WeakReference<ModuleTree>(tree));
                return treeId;
            }
        }

        /// <summary>Holds the lock under which dispatchers are attached (for <see cref="ModuleTree.ArmLocked"/> callers).</summary>
        internal static object Gate => s_gate;

        private static readonly Func<Type, (Creator?, Action<HookPoint>?, string)> s_bind = Bind;

        /// <summary>Binds the generated creator and attacher of the module type's TorchSharp arity to its type arguments (reflection once per type).</summary>
        private static (Creator?, Action<HookPoint>?, string) Bind(Type type)
        {
            var moduleType = FindModuleBase(type);
            if (moduleType is null) return (null, null, "");
            var args = moduleType.GetGenericArguments();
            var n = args.Length - 1;
            var create = typeof(Dispatchers).GetMethod("Create" + n, BindingFlags.NonPublic | BindingFlags.Static)!.MakeGenericMethod(args);
            var attach = typeof(Dispatchers).GetMethod("Attach" + n, BindingFlags.NonPublic | BindingFlags.Static)!.MakeGenericMethod(args);
            return (create.CreateDelegate<Creator>(), attach.CreateDelegate<Action<HookPoint>>(), Describe(moduleType));
        }

        /// <summary>The TorchSharp <c>Module&lt;…&gt;</c> base class of a module type, or null.</summary>
        public static Type? FindModuleBase(Type? type)
        {
            for (; type is not null; type = type.BaseType)
            {
                if (!type.IsGenericType) continue;
                var def = type.GetGenericTypeDefinition();
                if (def == typeof(Module<,>) || def == typeof(Module<,,>) || def == typeof(Module<,,,>) || def == typeof(Module<,,,,>)
                    || def == typeof(Module<,,,,,>) || def == typeof(Module<,,,,,,>))
                    return type;
            }
            return null;
        }

        /// <summary>"Module&lt;Tensor, (Tensor, Tensor)&gt;" for a closed Module type.</summary>
        public static string Describe(Type moduleType) => "Module<" + string.Join(", ", moduleType.GetGenericArguments().Select(Name)) + ">";

        /// <summary>A type as C# spells it: <c>(Tensor, Tensor)</c>, <c>Tensor?</c>, <c>Tuple&lt;Tensor, Tensor&gt;</c>.</summary>
        internal static string Name(Type t)
        {
            if (Nullable.GetUnderlyingType(t) is { } u) return Name(u) + "?";
            if (t.IsGenericType && t.FullName?.StartsWith("System.ValueTuple`", StringComparison.Ordinal) == true)
                return "(" + string.Join(", ", t.GetGenericArguments().Select(Name)) + ")";
            if (t.IsGenericType)
                return t.Name.Substring(0, t.Name.IndexOf('`')) + "<" + string.Join(", ", t.GetGenericArguments().Select(Name)) + ">";
            return t.Name;
        }

        // Create1 … Create6 and Attach1 … Attach6 (one pair per TorchSharp forward arity) are generated: src/TorchHooks.Generators/ArityFamilyGenerator.cs.
    }

    /// <summary>
    /// Adds the dispatchers to a TorchSharp module's hook dictionaries copy-on-write: a new dictionary (the
    /// dispatcher first, then the module's own TorchSharp hooks in their order) replaces the old one by one
    /// reference write, so a <c>call</c> enumerating the old dictionary on another thread is never disturbed.
    /// </summary>
    internal static class HookDictionaries
    {
        /// <summary>The dispatchers' key in TorchSharp's hook dictionaries.</summary>
        public const string Key = "TorchHooks.Dispatch";

        /// <summary>
        /// Adds <paramref name="pre"/> and <paramref name="post"/> to <paramref name="module"/>'s typed hook dictionaries
        /// (TorchSharp's internal fields, <see cref="TorchSharpInternals.HookDictionaries{TPre, TPost}"/>: a TorchSharp
        /// without them throws, naming the field; TorchSharp's public registration is not safe against calls under way).
        /// </summary>
        public static void Attach<TPre, TPost>(torch.nn.Module module, TPre pre, TPost post) where TPre : Delegate where TPost : Delegate
        {
            var hookable = (HookableModule<TPre, TPost>)module;
            var preField = TorchSharpInternals.HookDictionaries<TPre, TPost>.Pre;
            var postField = TorchSharpInternals.HookDictionaries<TPre, TPost>.Post;
            AddFirst(preField, hookable, pre);
            AddFirst(postField, hookable, post);
        }

        private static void AddFirst<THook>(FieldInfo field, object module, THook hook)
        {
            var old = field.GetValue(module) as Dictionary<string, THook>;
            var replacement = new Dictionary<string, THook>((old?.Count ?? 0) + 1) { [Key] = hook };
            if (old is not null)
                foreach (var entry in old) replacement[entry.Key] = entry.Value;
            Interlocked.MemoryBarrier();   // the dictionary is complete before another thread can see it
            field.SetValue(module, replacement);
        }
    }
}
