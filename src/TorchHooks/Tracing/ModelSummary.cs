using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Net;
using System.Text;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>One row of a <see cref="ModelSummary"/>: one module call, in call order.</summary>
    public sealed class SummaryRow
    {
        internal SummaryRow(ModuleCallRecord call, string index, bool isLeaf, bool recursive, long parameters, bool? trainable, long multAdds)
        {
            Call = call; Index = index; IsLeaf = isLeaf; IsRecursive = recursive; Params = parameters; Trainable = trainable; MultAdds = multAdds;
        }

        /// <summary>The recorded call.</summary>
        public ModuleCallRecord Call { get; }
        /// <summary>The module's path.</summary>
        public string Path => Call.Path;
        /// <summary>The module's class name.</summary>
        public string ModuleType => Call.ModuleType;
        /// <summary>Nesting depth (the model is 0).</summary>
        public int Depth => Call.Depth;
        /// <summary>torchinfo's <c>depth-idx</c>, e.g. <c>3-1</c>: the row's number among the rows of its depth (empty for the model).</summary>
        public string Index { get; }
        /// <summary>Whether the module has no submodules (only leaves count towards mult-adds).</summary>
        public bool IsLeaf { get; }
        /// <summary>Whether the module already had a row (a shared or re-called module: its parameters are counted once).</summary>
        public bool IsRecursive { get; }
        /// <summary>The module's own parameters (not its submodules'), 0 for a recursive row.</summary>
        public long Params { get; }
        /// <summary>Whether those parameters require gradients (null: none, or mixed).</summary>
        public bool? Trainable { get; }
        /// <summary>Mult-adds by torchinfo's rules (leaves only; 0 for containers).</summary>
        public long MultAdds { get; }
        /// <summary>The output shape (the first output tensor's), or null.</summary>
        public IReadOnlyList<long>? OutputShape => Call.Outputs.Count > 0 ? Call.Outputs[0].Shape : null;
        /// <summary>The input shape (the first input tensor's), or null.</summary>
        public IReadOnlyList<long>? InputShape => Call.Inputs.Count > 0 ? Call.Inputs[0].Shape : null;
    }

    /// <summary>
    /// A model summary like torchinfo's <c>summary(model, input_size)</c>: one row per module call (tree-indented
    /// <c>Type: depth-idx</c>, output shape, Param #, Mult-Adds, trainable), totals, and parameter and activation
    /// sizes. Built from one traced forward call (<see cref="ModuleTracer"/>), run under <c>no_grad</c>.
    /// </summary>
    /// <remarks>
    /// <para>Counting rules (torchinfo's <c>LayerInfo.calculate_macs</c>), per leaf-module call, for each of the module's
    /// own parameters named <c>weight</c> or <c>bias</c>: a module whose type name contains <c>Conv</c>:
    /// <c>numel × N × output spatial size</c> (<c>prod(out[:1] + out[2:])</c>); one containing <c>Linear</c>:
    /// <c>numel × prod(out[:-1])</c>; any other: <c>numel × out[0]</c> (batch only). Inner RNN parameters
    /// (<c>weight_ih_l0</c>, …): <c>numel × prod(out[:2])</c>. Only leaves (modules without submodules) count; a module
    /// called twice counts twice for mult-adds, its parameters once.</para>
    /// <para>Totals: params are the model's <c>parameters()</c> (each tensor once); "Forward/backward pass size" is
    /// twice the output bytes of every leaf call with parameters; sizes in MB are 10^6 bytes, as torchinfo prints them.</para>
    /// <para>Differences from torchinfo: containers show their own directly-registered parameters (usually <c>--</c>),
    /// not their subtree's; only calls through TorchHooks' call path are seen (functional ops inside a forward are not
    /// modules and have no row).</para>
    /// </remarks>
    public sealed class ModelSummary
    {
        private ModelSummary(string modelType, IReadOnlyList<SummaryRow> rows, long total, long trainable, long inputBytes, long passBytes, long paramBytes)
        {
            ModelType = modelType; Rows = rows; TotalParams = total; TrainableParams = trainable;
            InputBytes = inputBytes; ForwardBackwardBytes = passBytes; ParamsBytes = paramBytes;
            TotalMultAdds = rows.Where(r => r.IsLeaf).Sum(r => r.MultAdds);
        }

        /// <summary>The model's class name.</summary>
        public string ModelType { get; }
        /// <summary>One row per module call, in call order.</summary>
        public IReadOnlyList<SummaryRow> Rows { get; }
        /// <summary>All parameters of the model (each tensor once).</summary>
        public long TotalParams { get; }
        /// <summary>Parameters that require gradients.</summary>
        public long TrainableParams { get; }
        /// <summary>Parameters that do not require gradients.</summary>
        public long NonTrainableParams => TotalParams - TrainableParams;
        /// <summary>Σ mult-adds of the leaf rows.</summary>
        public long TotalMultAdds { get; }
        /// <summary>Bytes of the model's input tensors.</summary>
        public long InputBytes { get; }
        /// <summary>torchinfo's "Forward/backward pass size": 2 × the output bytes of the leaf calls with parameters.</summary>
        public long ForwardBackwardBytes { get; }
        /// <summary>Bytes of the parameters.</summary>
        public long ParamsBytes { get; }
        /// <summary>Input + forward/backward + params bytes.</summary>
        public long EstimatedTotalBytes => InputBytes + ForwardBackwardBytes + ParamsBytes;

        /// <summary>
        /// Summarizes <paramref name="model"/> by running <paramref name="run"/> (one forward call of it) under
        /// <c>no_grad</c> with a tracer on the model's tree. The model's train/eval mode is left as it is.
        /// </summary>
        public static ModelSummary Run(IHookedModule model, Action run)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Pass a facade from WithHooks().");
            if (run is null) throw new ArgumentNullException(nameof(run), "Pass the forward call to summarize, e.g. () => model.call(x).Dispose().");
            using var tracer = model.Trace(new TracerOptions { Name = "summary", MaxCalls = 1_000_000 });
            using (torch.no_grad()) run();
            tracer.Stop();
            return FromTrace(model, tracer);
        }

        /// <summary>Summarizes the calls <paramref name="tracer"/> recorded of <paramref name="model"/>'s modules.</summary>
        public static ModelSummary FromTrace(IHookedModule model, ModuleTracer tracer)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Pass a facade from WithHooks().");
            if (tracer is null) throw new ArgumentNullException(nameof(tracer), "Pass a tracer that recorded a call of the model, e.g. model.Trace().");
            var root = model.Unwrap();
            var calls = tracer.Calls.Where(c => c.Phase == CallPhase.Forward && c.Finished).ToList();
            var modules = new Dictionary<string, torch.nn.Module>();
            foreach (var p in model.HookPoints()) modules[p.Path] = p.Module;

            var seen = new HashSet<string>();
            var perDepth = new Dictionary<int, int>();
            var rows = new List<SummaryRow>();
            long passBytes = 0;
            foreach (var call in calls)
            {
                modules.TryGetValue(call.Path, out var module);
                bool recursive = !seen.Add(call.Path);
                bool leaf = module is null || !module.named_children().Any();
                long own = 0, trainable = 0, macs = 0;
                if (module is not null)
                {
                    foreach (var (name, p) in module.named_parameters(recurse: false))
                    {
                        long n = ReleasedParameters.Numel(p);   // an offloaded weight counts as the tensor it stands for
                        own += n;
                        if (p.requires_grad) trainable += n;
                        if (leaf && call.Outputs.Count > 0) macs += MultAdds(call.ModuleType, name, n, call.Outputs[0].Shape);
                    }
                }
                if (leaf && own > 0)
                    foreach (var o in call.Outputs.Take(1)) passBytes += 2 * o.Bytes;
                perDepth[call.Depth] = perDepth.TryGetValue(call.Depth, out var k) ? k + 1 : 1;
                string index = call.Depth == 0 ? "" : $"{call.Depth}-{perDepth[call.Depth]}";
                bool? train = own == 0 ? null : trainable == own ? true : trainable == 0 ? false : null;
                rows.Add(new SummaryRow(call, index, leaf, recursive, recursive ? 0 : own, train, leaf ? macs : 0));
            }

            long total = 0, trainableTotal = 0, paramBytes = 0;
            foreach (var p in root.parameters())
            {
                long n = ReleasedParameters.Numel(p);   // an offloaded weight counts as the tensor it stands for
                total += n;
                if (p.requires_grad) trainableTotal += n;
                paramBytes += n * TensorInfo.ElementSize(p.dtype);
            }
            long inputBytes = calls.Where(c => c.Depth == 0).Take(1).SelectMany(c => c.Inputs).Sum(i => i.Bytes);
            return new ModelSummary(root.GetType().Name, rows, total, trainableTotal, inputBytes, passBytes, paramBytes);
        }

        /// <summary>torchinfo's mult-adds of one parameter of a leaf module (see the remarks).</summary>
        public static long MultAdds(string moduleType, string parameterName, long numel, IReadOnlyList<long> output)
        {
            if (output.Count == 0) return 0;
            if (parameterName is "weight" or "bias")
            {
                if (moduleType.Contains("Conv", StringComparison.Ordinal))
                {
                    long spatial = output[0];
                    for (int i = 2; i < output.Count; i++) spatial *= output[i];
                    return numel * spatial;
                }
                if (moduleType.Contains("Linear", StringComparison.Ordinal))
                {
                    long lead = 1;
                    for (int i = 0; i < output.Count - 1; i++) lead *= output[i];
                    return numel * lead;
                }
                return output[0] * numel;
            }
            if (parameterName.Contains("weight", StringComparison.Ordinal) || parameterName.Contains("bias", StringComparison.Ordinal))
                return numel * output[0] * (output.Count > 1 ? output[1] : 1);
            return 0;
        }

        /// <summary>A count with torchinfo's unit: <c>1.81</c> and <c>G</c>.</summary>
        public static (double Value, string Unit) Readable(long count)
            => count >= 1e12 ? (count / 1e12, "T") : count >= 1e9 ? (count / 1e9, "G") : count >= 1e6 ? (count / 1e6, "M") : (count / 1e3, "K");

        private static string N(long v) => v.ToString("#,0", CultureInfo.InvariantCulture);
        private static string MB(long bytes) => (bytes / 1e6).ToString("0.00", CultureInfo.InvariantCulture);

        private string LayerName(SummaryRow r)
        {
            string prefix = r.Depth == 0 ? "" : string.Concat(Enumerable.Repeat("│    ", r.Depth - 1)) + "└─";
            if (r.Depth == 1) prefix = "├─";
            return prefix + r.ModuleType + (r.Index.Length > 0 ? ": " + r.Index : "");
        }

        private static string ParamText(SummaryRow r) => r.IsRecursive ? "(recursive)" : r.Params > 0 ? N(r.Params) : "--";
        private static string MacsText(SummaryRow r) => r.IsLeaf && r.MultAdds > 0 ? N(r.MultAdds) : "--";
        private static string TrainText(SummaryRow r) => r.Params == 0 ? "--" : r.Trainable switch { true => "True", false => "False", _ => "Partial" };
        private static string ShapeText(IReadOnlyList<long>? s) => s is null ? "--" : TensorInfo.FormatShape(s);

        private IEnumerable<(string Label, string Value)> Footer()
        {
            var (macs, unit) = Readable(TotalMultAdds);
            yield return ("Total params", N(TotalParams));
            yield return ("Trainable params", N(TrainableParams));
            yield return ("Non-trainable params", N(NonTrainableParams));
            yield return ($"Total mult-adds ({unit})", macs.ToString("0.00", CultureInfo.InvariantCulture));
            yield return ("Input size (MB)", MB(InputBytes));
            yield return ("Forward/backward pass size (MB)", MB(ForwardBackwardBytes));
            yield return ("Params size (MB)", MB(ParamsBytes));
            yield return ("Estimated Total Size (MB)", MB(EstimatedTotalBytes));
        }

        /// <summary>The table as torchinfo prints it (plain text, for consoles).</summary>
        public override string ToString()
        {
            const int first = 40, col = 25;
            string rule = new string('=', first + 4 * col);
            var sb = new StringBuilder();
            sb.AppendLine(rule);
            sb.Append("Layer (type:depth-idx)".PadRight(first)).Append("Output Shape".PadRight(col)).Append("Param #".PadRight(col))
              .Append("Mult-Adds".PadRight(col)).AppendLine("Trainable");
            sb.AppendLine(rule);
            foreach (var r in Rows)
                sb.Append(LayerName(r).PadRight(first)).Append(ShapeText(r.OutputShape).PadRight(col)).Append(ParamText(r).PadRight(col))
                  .Append(MacsText(r).PadRight(col)).AppendLine(TrainText(r));
            sb.AppendLine(rule);
            int i = 0;
            foreach (var (label, value) in Footer())
            {
                if (i++ == 4) sb.AppendLine(rule);
                sb.AppendLine($"{label}: {value}");
            }
            sb.AppendLine(rule);
            return sb.ToString();
        }

        /// <summary>The table as HTML (notebooks: the package's notebook extension registers it as the formatter of <see cref="ModelSummary"/>).</summary>
        public string ToHtml()
        {
            static string E(string s) => WebUtility.HtmlEncode(s);
            var sb = new StringBuilder();
            sb.Append("<table class=\"torchhooks-summary\"><thead><tr><th style=\"text-align:left\">Layer (type:depth-idx)</th><th>Output Shape</th><th>Param #</th><th>Mult-Adds</th><th>Trainable</th></tr></thead><tbody>");
            foreach (var r in Rows)
            {
                sb.Append("<tr><td style=\"text-align:left;font-family:monospace;white-space:pre\" title=\"").Append(E(r.Path)).Append("\">")
                  .Append(E(LayerName(r))).Append("</td><td>").Append(E(ShapeText(r.OutputShape))).Append("</td><td style=\"text-align:right\">")
                  .Append(E(ParamText(r))).Append("</td><td style=\"text-align:right\">").Append(E(MacsText(r))).Append("</td><td>")
                  .Append(E(TrainText(r))).Append("</td></tr>");
            }
            sb.Append("</tbody><tfoot>");
            foreach (var (label, value) in Footer())
                sb.Append("<tr><td style=\"text-align:left\" colspan=\"2\">").Append(E(label)).Append("</td><td style=\"text-align:right\" colspan=\"3\">").Append(E(value)).Append("</td></tr>");
            sb.Append("</tfoot></table>");
            return sb.ToString();
        }
    }

    /// <summary>Summary entry point on a wrapped model.</summary>
    public static partial class ModuleExtensions
    {
        /// <summary>
        /// torchinfo's <c>summary(model, input_data=x)</c>: runs one forward call of the model on <paramref name="input"/>
        /// under <c>no_grad</c> and returns the table (<see cref="ModelSummary"/>; <c>Console.WriteLine(summary)</c>).
        /// The output is disposed.
        /// </summary>
        public static ModelSummary Summary<TResult>(this HookedModule<Tensor, TResult> model, Tensor input)
        {
            if (model is null) throw new ArgumentNullException(nameof(model), "Call Summary(x) on a facade from WithHooks().");
            if (input is null) throw new ArgumentNullException(nameof(input), "Pass an input tensor, e.g. torch.randn(1, 3, 224, 224).");
            return ModelSummary.Run(model, () =>
            {
                var y = model.call(input);
                if (y is IDisposable d) d.Dispose();
            });
        }
    }
}
