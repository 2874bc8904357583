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
    /// Global hooks are typed by signature, so one pair is registered per recorded signature: 1–6 tensor inputs,
    /// and a tensor or a tuple of 2 or 3 tensors out. Calls of modules with other signatures (e.g. LSTM's nested
    /// tuples) are not recorded; a module whose input is recorded but whose output type is not has no outputs.
    /// </remarks>
    internal sealed class HookCallRecorder : ICallRecorder
    {
        public IReadOnlyList<CallRecord> Record(Action pass)
        {
            var session = new Session(Environment.CurrentManagedThreadId);
            var scope = new HookScope();
            try
            {
                session.Register<Tensor>(scope);
                session.Register<(Tensor, Tensor)>(scope);
                session.Register<(Tensor, Tensor, Tensor)>(scope);
                session.Register<(Tensor, Tensor, Tensor, Tensor)>(scope);
                session.Register<(Tensor, Tensor, Tensor, Tensor, Tensor)>(scope);
                session.Register<(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)>(scope);
                pass();
            }
            finally
            {
                scope.Dispose();
            }
            return session.Calls;
        }

        private sealed class Session
        {
            private readonly int _thread;
            private readonly Dictionary<(string Path, int Call), CallRecord> _open = new();
            private int _baseDepth = -1;

            public Session(int thread) { _thread = thread; }

            public List<CallRecord> Calls { get; } = new();

            public void Register<TArgs>(HookScope scope)
            {
                scope.Add(ModuleHooks.register_module_forward_pre_hook<TArgs>((module, args) => { Begin(module, args); return null; }));
                scope.Add(ModuleHooks.register_module_forward_hook<TArgs, Tensor>((module, args, result) => { End(result); return null; }));
                scope.Add(ModuleHooks.register_module_forward_hook<TArgs, (Tensor, Tensor)>((module, args, result) => { End(result); return null; }));
                scope.Add(ModuleHooks.register_module_forward_hook<TArgs, (Tensor, Tensor, Tensor)>((module, args, result) => { End(result); return null; }));
            }

            private void Begin(nn.Module module, object? args)
            {
                if (Environment.CurrentManagedThreadId != _thread) return;
                var where = ModuleCallInfo.Current;
                if (_baseDepth < 0) _baseDepth = where.Depth;
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
                    Inputs = Tensors(args).Select(t => t is null ? "null" : Fingerprint.Describe(t)).ToList(),
                };
                Calls.Add(record);
                _open[(record.Path, record.Call)] = record;
            }

            private void End(object? result)
            {
                if (Environment.CurrentManagedThreadId != _thread) return;
                var where = ModuleCallInfo.Current;
                if (!_open.Remove((where.Path, where.CallIndex), out var record)) return;
                record.Outputs = Tensors(result).Select(t => t is null ? new OutputRecord { Tensor = "null" } : Fingerprint.Of(t)).ToList();
            }
        }

        /// <summary>The tensors in an input or output: one tensor, or a (nested) tuple of them.</summary>
        internal static IEnumerable<Tensor?> Tensors(object? value)
        {
            switch (value)
            {
                case null: yield return null; break;
                case Tensor t: yield return t; break;
                case ITuple tuple:
                    for (int i = 0; i < tuple.Length; i++)
                        foreach (var inner in Tensors(tuple[i])) yield return inner;
                    break;
            }
        }

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
