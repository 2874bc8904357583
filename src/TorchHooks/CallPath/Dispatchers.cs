using System;
using System.Collections.Concurrent;
using System.Linq;
using System.Reflection;
using System.Runtime.CompilerServices;
using TorchSharp;
using static TorchSharp.torch.nn;

namespace TorchHooks
{
    /// <summary>
    /// Installs TorchHooks' single pre-hook/post-hook pair on a module (once per module per process) and
    /// keeps its <see cref="HookPoint"/>. One installer per TorchSharp forward arity (1–6 inputs, generated), bound by
    /// reflection once per closed module type and then called as a delegate; each
    /// turns the inputs into one value (the input, or a tuple of the inputs) for the call path.
    /// The fast-path checks (of <see cref="CallPath{TArgs,TResult}.BeforeForward"/>) are repeated inline in the
    /// lambdas so that a call with no hook anywhere costs two flag reads and two thread-static reads (the pre-hook
    /// also enters the call path while frames are open on the thread, to finish calls that threw and were caught).
    /// </summary>
    internal static partial class Dispatchers
    {
        private static readonly ConditionalWeakTable<torch.nn.Module, HookPoint> s_points = new();
        private static readonly object s_gate = new();

        /// <summary>Installs the dispatching hooks on a module of one closed type (a generated InstallN, bound once per type).</summary>
        private delegate HookPoint Installer(torch.nn.Module module, string path, string signature);

        /// <summary>Per module type: its installer and signature, or no installer (no forward). Built once per type.</summary>
        private static readonly ConcurrentDictionary<Type, (Installer? Install, string Signature)> s_installers = new();

        /// <summary>
        /// The hook point of <paramref name="module"/>, installing the dispatching hooks the first time.
        /// Returns null for modules without a forward (ModuleList, ModuleDict, ParameterList...).
        /// </summary>
        public static HookPoint? GetOrInstall(torch.nn.Module module, string path)
        {
            if (s_points.TryGetValue(module, out var existing)) return existing;
            var (install, signature) = s_installers.GetOrAdd(module.GetType(), s_createInstaller);
            if (install is null) return null;
            lock (s_gate)
            {
                if (s_points.TryGetValue(module, out existing)) return existing;
                var point = install(module, path, signature);
                s_points.Add(module, point);
                return point;
            }
        }

        private static readonly Func<Type, (Installer?, string)> s_createInstaller = CreateInstaller;

        /// <summary>Binds the generated installer of the module type's TorchSharp arity to its type arguments (reflection once per type).</summary>
        private static (Installer?, string) CreateInstaller(Type type)
        {
            var moduleType = FindModuleBase(type);
            if (moduleType is null) return (null, "");
            var args = moduleType.GetGenericArguments();
            var method = typeof(Dispatchers).GetMethod("Install" + (args.Length - 1), BindingFlags.NonPublic | BindingFlags.Static)!
                .MakeGenericMethod(args);
            return (method.CreateDelegate<Installer>(), Describe(moduleType));
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

        // Install1 … Install6 (one per TorchSharp forward arity) are generated: src/TorchHooks.Generators/ArityFamilyGenerator.cs.
    }
}
