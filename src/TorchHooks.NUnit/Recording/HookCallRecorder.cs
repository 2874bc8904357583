using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.CompilerServices;
using TorchSharp;
using static TorchSharp.torch;

namespace TorchHooks.NUnit
{
    /// <summary>
    /// Records a pass through TorchHooks' public API: global forward pre-hooks (a call begins: path, call index,
    /// depth, type, parameters, inputs) and global forward hooks (it ends: outputs and their fingerprints), registered
    /// for the duration of the pass and removed in <c>finally</c>. Only calls on the recording thread are kept.
    /// </summary>
    /// <remarks>
    /// Global hooks are typed by signature. A pair is registered up front for 1–6 tensor inputs with a tensor or a
    /// tuple of 2 or 3 tensors out; when the first call begins, the signature of every module in the called
    /// module's tree is read from its <c>Module&lt;…&gt;</c> base type and a pair is added for each one not covered
    /// (<c>MultiheadAttention</c>'s bool and optional inputs, LSTM's nested tuples, ...), so every module the
    /// summary shows is recorded (the summary's tracer reaches exactly the typed modules of the tree); non-tensor
    /// arguments and outputs are recorded as values. In the delegate form, an outermost module whose signature is none
    /// of the up-front ones is not seen (nothing is recorded, and the message says so).
    /// </remarks>
    internal sealed class HookCallRecorder : ICallRecorder
    {
        public IReadOnlyList<CallRecord> Record(Action pass)
        {
            var session = new Session(Environment.CurrentManagedThreadId);
            var scope = new HookScope();
            try
            {
                session.Scope = scope;
                session.Register<Tensor>();
                session.Register<(Tensor, Tensor)>();
                session.Register<(Tensor, Tensor, Tensor)>();
                session.Register<(Tensor, Tensor, Tensor, Tensor)>();
                session.Register<(Tensor, Tensor, Tensor, Tensor, Tensor)>();
                session.Register<(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)>();
                pass();
            }
            finally
            {
                scope.Dispose();
            }
            return session.Calls;
        }

        /// <summary>
        /// The input (1 type, or the tuple of 2–6) and output types of a module's forward, from its
        /// <c>Module&lt;T1, …, TResult&gt;</c> base (TorchSharp has 1–6 inputs); null for a module with no forward (ModuleList, ModuleDict).
        /// </summary>
        internal static (Type Args, Type Result)? Signature(Type type)
        {
            for (var t = type; t != null; t = t.BaseType)
            {
                if (!t.IsGenericType || t.Namespace != typeof(nn.Module).Namespace || !t.Name.StartsWith("Module`", StringComparison.Ordinal)
                    || t.DeclaringType != typeof(nn.Module).DeclaringType) continue;
                var a = t.GetGenericArguments();
                int n = a.Length - 1;
                if (n < 1 || n > 6) return null;
                var args = n == 1 ? a[0] : Type.GetType($"System.ValueTuple`{n}")!.MakeGenericType(a.Take(n).ToArray());
                return (args, a[n]);
            }
            return null;
        }

        private sealed class Session
        {
            private readonly int _thread;
            private readonly Dictionary<(string Path, int Call), CallRecord> _open = new();
            private readonly HashSet<Type> _pre = new();
            private readonly HashSet<(Type, Type)> _post = new();
            private readonly HashSet<nn.Module> _roots = new(ReferenceEqualityComparer.Instance);
            private int _baseDepth = -1;

            public Session(int thread) { _thread = thread; }

            public HookScope Scope { get; set; } = null!;

            public List<CallRecord> Calls { get; } = new();

            public void Register<TArgs>()
            {
                Register<TArgs, Tensor>();
                Register<TArgs, (Tensor, Tensor)>();
                Register<TArgs, (Tensor, Tensor, Tensor)>();
            }

            /// <summary>A begin hook for the input type (once) and an end hook for the pair.</summary>
            public void Register<TArgs, TResult>()
            {
                if (_pre.Add(typeof(TArgs)))
                    Scope.Add(ModuleHooks.register_module_forward_pre_hook<TArgs>((module, args) => { Begin(module, args); return null; }));
                if (_post.Add((typeof(TArgs), typeof(TResult))))
                    Scope.Add(ModuleHooks.register_module_forward_hook<TArgs, TResult>((module, args, result) => { End(result); return null; }));
            }

            private static readonly System.Reflection.MethodInfo s_register = typeof(Session).GetMethods()
                .Single(m => m.Name == nameof(Register) && m.GetGenericArguments().Length == 2);

            /// <summary>
            /// Hooks every signature of <paramref name="root"/>'s tree not hooked yet (hooks added during a call apply from
            /// the next call, which every module below the first one is).
            /// </summary>
            private void Discover(nn.Module root)
            {
                foreach (var module in root.modules())
                    if (Signature(module.GetType()) is { } sig && !_post.Contains((sig.Args, sig.Result)))
                        s_register.MakeGenericMethod(sig.Args, sig.Result).Invoke(this, null);
            }

            private void Begin(nn.Module module, object? args)
            {
                if (Environment.CurrentManagedThreadId != _thread) return;
                var where = ModuleCallInfo.Current;
                if (_baseDepth < 0) _baseDepth = where.Depth;
                if (where.Depth == _baseDepth && _roots.Add(module)) Discover(module);   // each outermost module's tree, once
                var own = module.named_parameters(recurse: false).Select(p => p.parameter).ToList();
                var record = new CallRecord
                {
                    Path = where.Path,
                    Call = where.CallIndex,
                    Depth = where.Depth - _baseDepth,
                    Type = TypeName(module.GetType()),
                    Params = own.Sum(p => p.numel()),
                    ParamDtype = own.Count == 0 ? null : string.Join(",", own.Select(p => Fingerprint.DtypeName(p.dtype)).Distinct()),
                    Autocast = AutocastText.Current(),
                    Module = module,
                    Inputs = Values(args).Select(v => v is Tensor { IsInvalid: false } t ? Fingerprint.Describe(t) : ValueText(v)).ToList(),
                };
                Calls.Add(record);
                _open[(record.Path, record.Call)] = record;
            }

            private void End(object? result)
            {
                if (Environment.CurrentManagedThreadId != _thread) return;
                var where = ModuleCallInfo.Current;
                if (!_open.Remove((where.Path, where.CallIndex), out var record)) return;
                record.Outputs = Values(result).Select(v => v is Tensor { IsInvalid: false } t ? Fingerprint.Of(t) : new OutputRecord { Tensor = ValueText(v) }).ToList();
            }
        }

        /// <summary>The values in an input or output: one value, or a (nested) tuple of them flattened; tensors, nulls and others alike.</summary>
        internal static IEnumerable<object?> Values(object? value)
        {
            if (value is ITuple tuple && value is not Tensor)
            {
                for (int i = 0; i < tuple.Length; i++)
                    foreach (var inner in Values(tuple[i])) yield return inner;
            }
            else yield return value;
        }

        /// <summary>A non-tensor argument or output as it is recorded: <c>null</c>, <c>true</c>, <c>3</c>, <c>0.5</c>, <c>"text"</c>, an enum's name, or the type's name.</summary>
        internal static string ValueText(object? value) => value switch
        {
            null => "null",
            Tensor => "undefined",   // a tensor without storage, e.g. MultiheadAttention's weights with need_weights: false (PyTorch's None)
            bool b => b ? "true" : "false",
            string text => "\"" + text + "\"",
            Enum e => e.ToString(),
            IFormattable f when value.GetType().IsPrimitive || value is decimal => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
            _ => TypeName(value.GetType()),
        };

        /// <summary><c>Linear</c>, <c>Sequential</c>; generic types without the arity mark (<c>MyBlock&lt;Tensor&gt;</c> → <c>MyBlock</c>).</summary>
        internal static string TypeName(Type type)
        {
            string name = type.Name;
            int tick = name.IndexOf('`');
            return tick < 0 ? name : name.Substring(0, tick);
        }
    }

    internal static class AutocastText
    {
        /// <summary>"off", or the enabled devices with their dtypes: "cpu bfloat16", "cpu bfloat16, cuda float16".</summary>
        public static string Current()
        {
            var parts = new List<string>();
            if (Amp.is_autocast_enabled(DeviceType.CPU)) parts.Add("cpu " + Fingerprint.DtypeName(Amp.get_autocast_dtype(DeviceType.CPU)));
            if (Amp.is_autocast_enabled(DeviceType.CUDA)) parts.Add("cuda " + Fingerprint.DtypeName(Amp.get_autocast_dtype(DeviceType.CUDA)));
            return parts.Count == 0 ? "off" : string.Join(", ", parts);
        }
    }
}
