using System;
using System.Diagnostics;

namespace TorchHooks
{
    /// <summary>
    /// TorchHooks' OpenTelemetry names: the <see cref="System.Diagnostics.ActivitySource"/> that emits one span
    /// per module call (subscribe with <c>AddSource(TorchHooksTelemetry.ActivitySourceName)</c>) and the tags on
    /// those spans. Span names are <c>forward &lt;path&gt;</c> (<c>forward &lt;root&gt;</c> for the model itself),
    /// kind <see cref="ActivityKind.Internal"/>, status Error when the call threw.
    /// </summary>
    public static class TorchHooksTelemetry
    {
        /// <summary>The <see cref="ActivitySource"/> name: <c>TorchHooks</c>.</summary>
        public const string ActivitySourceName = "TorchHooks";
        /// <summary><c>torchhooks.module.path</c>: the module's <c>named_modules()</c> path (root: empty string).</summary>
        public const string ModulePath = "torchhooks.module.path";
        /// <summary><c>torchhooks.module.type</c>: the module's class name, e.g. <c>Conv2d</c>.</summary>
        public const string ModuleType = "torchhooks.module.type";
        /// <summary><c>torchhooks.module.call_index</c>: the module's call number within the outermost call (int).</summary>
        public const string CallIndex = "torchhooks.module.call_index";
        /// <summary><c>torchhooks.phase</c>: <c>forward</c> (or <c>backward</c>).</summary>
        public const string Phase = "torchhooks.phase";
        /// <summary><c>torchhooks.module.training</c>: the module's training flag (bool).</summary>
        public const string Training = "torchhooks.module.training";
        /// <summary><c>torchhooks.input.shapes</c>: input tensor shapes, <c>[1, 3, 224, 224]</c>, several separated by <c>"; "</c>.</summary>
        public const string InputShapes = "torchhooks.input.shapes";
        /// <summary><c>torchhooks.input.dtypes</c>: input dtypes, e.g. <c>Float32</c>, several separated by <c>"; "</c>.</summary>
        public const string InputDtypes = "torchhooks.input.dtypes";
        /// <summary><c>torchhooks.output.shapes</c>: output tensor shapes.</summary>
        public const string OutputShapes = "torchhooks.output.shapes";
        /// <summary><c>torchhooks.output.dtypes</c>: output dtypes.</summary>
        public const string OutputDtypes = "torchhooks.output.dtypes";
        /// <summary><c>torchhooks.device</c>: the first input's device, <c>cpu</c> or <c>cuda:0</c>.</summary>
        public const string Device = "torchhooks.device";
        /// <summary><c>torchhooks.autocast</c>: the CPU autocast dtype in force for the module's forward; absent when autocast is off.</summary>
        public const string Autocast = "torchhooks.autocast";
    }

    /// <summary>Tags of the spans (names in <see cref="TorchHooksTelemetry"/>).</summary>
    internal static class SpanTags
    {
        public static void TagStart<TArgs>(Activity activity, CallFrame frame, TArgs args)
        {
            var module = frame.Module;
            activity.SetTag(TorchHooksTelemetry.ModulePath, frame.Node.Path);
            activity.SetTag(TorchHooksTelemetry.ModuleType, frame.Node.TypeName);
            activity.SetTag(TorchHooksTelemetry.CallIndex, frame.CallIndex);
            activity.SetTag(TorchHooksTelemetry.Phase, "forward");
            activity.SetTag(TorchHooksTelemetry.Training, module.training);
            var inputs = TensorInfo.Describe(args);
            if (inputs.Length > 0)
            {
                activity.SetTag(TorchHooksTelemetry.InputShapes, Shapes(inputs));
                activity.SetTag(TorchHooksTelemetry.InputDtypes, Dtypes(inputs));
                activity.SetTag(TorchHooksTelemetry.Device, inputs[0].Device);
            }
            var (cpu, _) = ModuleTracer.AutocastFor(frame.Node);
            if (cpu is { } dtype) activity.SetTag(TorchHooksTelemetry.Autocast, dtype.ToString());
        }

        public static void TagEnd<TResult>(Activity activity, TResult result)
        {
            var outputs = TensorInfo.Describe(result);
            if (outputs.Length == 0) return;
            activity.SetTag(TorchHooksTelemetry.OutputShapes, Shapes(outputs));
            activity.SetTag(TorchHooksTelemetry.OutputDtypes, Dtypes(outputs));
        }

        private static string Shapes(TensorInfo[] infos) => infos.Length == 1 ? infos[0].ShapeText : string.Join("; ", Array.ConvertAll(infos, i => i.ShapeText));
        private static string Dtypes(TensorInfo[] infos) => infos.Length == 1 ? infos[0].Dtype.ToString() : string.Join("; ", Array.ConvertAll(infos, i => i.Dtype.ToString()));
    }
}
