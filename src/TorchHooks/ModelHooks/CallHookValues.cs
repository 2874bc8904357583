using System;
using System.Runtime.CompilerServices;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>Helpers for <see cref="ModelHook"/>s that work on modules of any signature.</summary>
    public static class CallHookValues
    {
        /// <summary>
        /// Applies <paramref name="map"/> to every tensor in a module's input or output — the tensor itself, or each
        /// tensor item of a tuple (nested tuples too); other items are kept — and rebuilds the value (Accelerate's
        /// <c>send_to_device</c> walks the same way). Returns <paramref name="value"/> itself when <paramref name="map"/>
        /// returned every tensor unchanged. The caller owns the tensors <paramref name="map"/> makes.
        /// </summary>
        public static T MapTensors<T>(T value, Func<Tensor, Tensor> map)
        {
            if (map is null) throw new ArgumentNullException(nameof(map), "Pass the mapping, e.g. t => t.to(device).");
            return (T)Map(value, map)!;
        }

        private static object? Map(object? value, Func<Tensor, Tensor> map)
        {
            switch (value)
            {
                case Tensor t:
                    return map(t);
                case ITuple tuple:
                    var items = new object?[tuple.Length];
                    bool changed = false;
                    for (int i = 0; i < items.Length; i++)
                    {
                        items[i] = Map(tuple[i], map);
                        changed |= !ReferenceEquals(items[i], tuple[i]);
                    }
                    return changed ? Rebuild(value.GetType(), items) : value;
                default:
                    return value;
            }
        }

        /// <summary>The tensors in a module's input or output (the tensor, or a tuple's tensor items, nested too).</summary>
        internal static System.Collections.Generic.List<Tensor> TensorsOf(object? value)
        {
            var list = new System.Collections.Generic.List<Tensor>();
            Collect(value, list);
            return list;
        }

        private static void Collect(object? value, System.Collections.Generic.List<Tensor> into)
        {
            if (value is Tensor t) into.Add(t);
            else if (value is ITuple tuple)
                for (int i = 0; i < tuple.Length; i++) Collect(tuple[i], into);
        }

        /// <summary>Whether two inputs or outputs hold the same objects, item by item (by reference: Tensor.Equals compares values).</summary>
        internal static bool Same(object? a, object? b)
        {
            if (ReferenceEquals(a, b)) return true;
            if (a is not ITuple x || b is not ITuple y || x.Length != y.Length) return false;
            for (int i = 0; i < x.Length; i++)
                if (!Same(x[i], y[i])) return false;
            return true;
        }

        /// <summary>Whether <paramref name="value"/> is or holds <paramref name="t"/> (by reference).</summary>
        internal static bool Holds(object? value, Tensor t)
        {
            if (ReferenceEquals(value, t)) return true;
            if (value is ITuple tuple)
                for (int i = 0; i < tuple.Length; i++)
                    if (Holds(tuple[i], t)) return true;
            return false;
        }

        /// <summary>
        /// A post_forward replaced <paramref name="output"/> with <paramref name="result"/>: disposes the old output's
        /// tensors that live nowhere else (not in the new output, not among the inputs, not parameters).
        /// </summary>
        internal static void DisposeReplaced(object? output, object? result, object? args, object? madeArgs)
        {
            foreach (var t in TensorsOf(output))
                if (t is not TorchSharp.Modules.Parameter && !t.IsInvalid && !Holds(result, t) && !Holds(args, t) && !Holds(madeArgs, t))
                    t.Dispose();
        }

        /// <summary>A tuple of <paramref name="type"/> from <paramref name="items"/> (a ValueTuple of more than 7 items nests its rest).</summary>
        private static object Rebuild(Type type, object?[] items)
        {
            var args = type.GetGenericArguments();
            if (args.Length == 8 && items.Length > 7)
            {
                var rest = Rebuild(args[7], items[7..]);
                var first = new object?[8];
                Array.Copy(items, first, 7);
                first[7] = rest;
                return Activator.CreateInstance(type, first)!;
            }
            return Activator.CreateInstance(type, items)!;
        }
    }
}
