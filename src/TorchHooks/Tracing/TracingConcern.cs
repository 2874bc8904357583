using System;
using System.Runtime.CompilerServices;
using System.Collections.Generic;
using System.Diagnostics;
using System.Reflection;
using System.Threading;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// The tracing concern of the call path, the outermost one: a module call begins here (after nothing) and
    /// ends here (after everything, forward hooks included). It feeds the open observers — tracers
    /// (<see cref="ModuleTracer"/>), activation caches (<see cref="ActivationCache"/>) — and, when an
    /// <c>ActivityListener</c> listens to <see cref="TorchHooksTelemetry.ActivitySourceName"/>, starts an
    /// OpenTelemetry span per module call, parented along the call tree through <see cref="Activity.Current"/>.
    /// </summary>
    /// <remarks>
    /// Off means free: with no observer open and no listener, <see cref="IsActiveEverywhere"/> is false and calls
    /// take the fast path unchanged. Whether someone listens is re-read when an observer opens or closes and at the
    /// start of every outermost facade call (<see cref="CheckListeners"/>): a listener added while no facade call is
    /// under way is seen from the next facade call on.
    /// </remarks>
    internal sealed class TracingConcern : CallConcern
    {
        public static readonly TracingConcern Instance = new();

        internal static readonly ActivitySource Source = new(TorchHooksTelemetry.ActivitySourceName,
            typeof(TracingConcern).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion);

        private static readonly object s_gate = new();
        private static volatile ModuleTracer[] s_tracers = Array.Empty<ModuleTracer>();
        private static volatile CallObserver[] s_observers = Array.Empty<CallObserver>();
        private static volatile bool s_listening;
        private static volatile bool s_backward;
        private static readonly BackwardObserver s_backwardObserver = new BackwardTimings();
        private static readonly SpanObserver s_spanObserver = new Spans();

        public override bool IsActiveFor(HookPoint node) => false;

        public override bool IsActiveEverywhere => s_tracers.Length > 0 || s_observers.Length > 0 || s_listening;

        public override CallSteps<TArgs, TResult> Steps<TArgs, TResult>() => new Typed<TArgs, TResult>();

        /// <summary>The outermost facade call begins: an OpenTelemetry listener may have been added or removed since the last one.</summary>
        public override bool OuterCallBegins(torch.nn.Module root)
        {
            CheckListeners();
            return false;
        }

        /// <summary>Re-reads whether an <c>ActivityListener</c> listens to TorchHooks' source; recomputes the fast path if that changed.</summary>
        internal static void CheckListeners()
        {
            bool listening = Source.HasListeners();
            if (listening == s_listening) return;
            s_listening = listening;
            CallPath.RecomputeEverywhere();
        }

        internal static void Add(ModuleTracer tracer) => Change(() => s_tracers = With(s_tracers, tracer));

        internal static void Remove(ModuleTracer tracer) => Change(() => s_tracers = Without(s_tracers, tracer));

        internal static void Add(CallObserver observer) => Change(() => s_observers = With(s_observers, observer));

        internal static void Remove(CallObserver observer) => Change(() => s_observers = Without(s_observers, observer));

        private static void Change(Action change)
        {
            lock (s_gate)
            {
                change();
                bool backward = false;
                foreach (var t in s_tracers) backward |= t.RecordsBackward;
                foreach (var o in s_observers) backward |= o.CapturesGradients;
                s_backward = backward;
                // Backward timings and gradients come through the seam's observer route, from whichever concern wraps calls for backward.
                if (backward) BackwardEvents.Add(s_backwardObserver);
                else BackwardEvents.Remove(s_backwardObserver);
                // Spans of work for module calls (offload loads, waits, reads ahead) come through the seam's span route while a tracer is open.
                if (s_tracers.Length > 0) SpanEvents.Add(s_spanObserver);
                else SpanEvents.Remove(s_spanObserver);
            }
            s_listening = Source.HasListeners();
            CallPath.RecomputeEverywhere();
        }

        private static T[] With<T>(T[] list, T item) where T : class
        {
            var bigger = new T[list.Length + 1];
            list.CopyTo(bigger, 0);
            bigger[^1] = item;
            return bigger;
        }

        private static T[] Without<T>(T[] list, T item) where T : class
        {
            int i = Array.IndexOf(list, item);
            if (i < 0) return list;
            var smaller = new T[list.Length - 1];
            Array.Copy(list, 0, smaller, 0, i);
            Array.Copy(list, i + 1, smaller, i, list.Length - i - 1);
            return smaller;
        }

        /// <summary>The number of tracers and caches open (tests, diagnostics).</summary>
        internal static int ObserverCount => s_tracers.Length + s_observers.Length;

        /// <summary>
        /// Whether an open tracer records backward timings (<see cref="TracerOptions.Backward"/>) or a cache captures
        /// gradients (<see cref="CacheOptions.Gradients"/>): the tracing concern is then subscribed to
        /// <see cref="BackwardEvents"/>, for the modules they want (<see cref="WantsBackward"/>).
        /// </summary>
        internal static bool BackwardRequested => s_backward;

        /// <summary>The tracing concern's subscription to the seam's backward route: feeds tracers' backward timings and caches' gradients.</summary>
        private sealed class BackwardTimings : BackwardObserver
        {
            public override bool Wants(HookPoint node) => WantsBackward(node);

            public override void Gradients(HookPoint node, int callIndex, Tensor?[] gradOutputs) => RecordGradients(node, callIndex, gradOutputs);

            public override void Backward(HookPoint node, int callIndex, long startTimestamp, long endTimestamp, Tensor?[]? gradInputs, Tensor?[]? gradOutputs)
                => RecordBackward(node, callIndex, startTimestamp, endTimestamp, gradInputs, gradOutputs);
        }

        /// <summary>The tracing concern's subscription to the seam's span route: records spans in the open tracers that want the module.</summary>
        private sealed class Spans : SpanObserver
        {
            public override void Span(string name, HookPoint node, long bytes, long startTimestamp, long endTimestamp)
            {
                foreach (var tracer in s_tracers)
                    if (tracer.Wants(node)) tracer.RecordSpan(name, node.Path, bytes, startTimestamp, endTimestamp);
            }
        }

        /// <summary>Whether an open tracer records the backward timings of <paramref name="node"/>'s module, or a cache its gradients.</summary>
        internal static bool WantsBackward(HookPoint node)
        {
            foreach (var tracer in s_tracers)
                if (tracer.RecordsBackward && tracer.Wants(node)) return true;
            foreach (var observer in s_observers)
                if (observer.CapturesGradients && observer.Wants(node)) return true;
            return false;
        }

        /// <summary>
        /// The gradients w.r.t. the outputs of a call of <paramref name="node"/>'s module (after its backward pre-hooks),
        /// for the open observers that capture gradients (from <see cref="BackwardEvents"/>).
        /// </summary>
        internal static void RecordGradients(HookPoint node, int callIndex, Tensor?[] gradOutputs)
        {
            foreach (var observer in s_observers)
                if (observer.CapturesGradients && observer.Wants(node))
                    observer.Gradients(node, callIndex, gradOutputs);
        }

        /// <summary>
        /// Backward timings (from <see cref="BackwardEvents"/>): records a backward pass through
        /// <paramref name="node"/>'s module, from <paramref name="startTimestamp"/> (its output-gradient node ran) to
        /// <paramref name="endTimestamp"/> (its input-gradient node ran), <see cref="Stopwatch.GetTimestamp"/> values,
        /// in every open tracer that records backward timings, on the calling thread's backward track.
        /// </summary>
        internal static void RecordBackward(HookPoint node, int callIndex, long startTimestamp, long endTimestamp,
            Tensor?[]? gradInputs, Tensor?[]? gradOutputs)
        {
            foreach (var tracer in s_tracers)
                if (tracer.RecordsBackward)
                    tracer.RecordBackward(node, callIndex, startTimestamp, endTimestamp, gradInputs, gradOutputs);
        }

        /// <summary>Per call: the tracers and observers open when it began, each one's token for it, and the span.</summary>
        private sealed class State : CallState
        {
            public ModuleTracer[] Tracers = Array.Empty<ModuleTracer>();
            public long[] TracerTokens = Array.Empty<long>();
            public CallObserver[] Observers = Array.Empty<CallObserver>();
            public object?[] Tokens = Array.Empty<object?>();
            public Activity? Activity;

            public override void Clear()
            {
                Tracers = Array.Empty<ModuleTracer>();
                Observers = Array.Empty<CallObserver>();
                Array.Clear(Tokens);
                Activity = null;
            }

            public long TokenOf(ModuleTracer tracer)
            {
                var tracers = Tracers;
                for (int i = 0; i < tracers.Length; i++)
                    if (ReferenceEquals(tracers[i], tracer)) return TracerTokens[i];
                return -1;
            }

            public object? TokenOf(CallObserver observer)
            {
                var observers = Observers;
                for (int i = 0; i < observers.Length; i++)
                    if (ReferenceEquals(observers[i], observer)) return Tokens[i];
                return null;
            }
        }

        /// <summary>The token <paramref name="tracer"/> gave the innermost enclosing call on this thread that it recorded (-1: none).</summary>
        private static long ParentToken(CallStack stack, ModuleTracer tracer)
        {
            for (int i = stack.Count - 2; i >= 0; i--)
                if (Unsafe.As<State>(stack[i].State(Instance.Slot)) is { } state && state.TokenOf(tracer) is var token && token >= 0)
                    return token;
            return -1;
        }

        /// <summary>The token <paramref name="observer"/> gave the innermost enclosing call on this thread that it recorded.</summary>
        private static object? ParentToken(CallStack stack, CallObserver observer)
        {
            for (int i = stack.Count - 2; i >= 0; i--)
                if (Unsafe.As<State>(stack[i].State(Instance.Slot)) is { } state && state.TokenOf(observer) is { } token)
                    return token;
            return null;
        }

        private sealed class Typed<TArgs, TResult> : CallSteps<TArgs, TResult>
        {
            public override void In(CallFrame frame, ref TArgs args)
            {
                var state = Unsafe.As<State>(frame.State(Instance.Slot) ??= new State());
                var tracers = s_tracers;
                var observers = s_observers;
                if (tracers.Length + observers.Length > 0)
                {
                    long now = Stopwatch.GetTimestamp();
                    var stack = CallStack.Current;
                    state.Tracers = tracers;
                    if (state.TracerTokens.Length < tracers.Length) state.TracerTokens = new long[tracers.Length];
                    for (int i = 0; i < tracers.Length; i++)
                    {
                        var tracer = tracers[i];
                        state.TracerTokens[i] = tracer.Wants(frame.Node) ? tracer.Begin(frame, args, ParentToken(stack, tracer), now) : -1;
                    }
                    state.Observers = observers;
                    if (state.Tokens.Length < observers.Length) state.Tokens = new object?[observers.Length];
                    for (int i = 0; i < observers.Length; i++)
                    {
                        var observer = observers[i];
                        if (frame.IsRecomputation || !observer.Wants(frame.Node)) continue;   // a checkpoint's recompute is not cached twice
                        state.Tokens[i] = observer.Begin(frame, args, ParentToken(stack, observer), now);
                    }
                }
                if (s_listening && Source.StartActivity(frame.Node.SpanName, ActivityKind.Internal) is { } activity)
                {
                    state.Activity = activity;
                    if (activity.IsAllDataRequested) SpanTags.TagStart(activity, frame, args);
                }
            }

            public override void Out(CallFrame frame, ref TArgs args, ref TResult result)
            {
                if (Unsafe.As<State>(frame.State(Instance.Slot)) is not { } state) return;
                var tracers = state.Tracers;
                var observers = state.Observers;
                if (tracers.Length + observers.Length > 0)
                {
                    long now = Stopwatch.GetTimestamp();
                    for (int i = 0; i < tracers.Length; i++)
                    {
                        long token = state.TracerTokens[i];
                        if (token < 0) continue;
                        state.TracerTokens[i] = -1;   // ended: a failure step after a later step threw does not end it twice
                        tracers[i].End(token, result, now, failed: false);
                    }
                    for (int i = 0; i < observers.Length; i++)
                    {
                        if (state.Tokens[i] is not { } token) continue;
                        state.Tokens[i] = null;
                        observers[i].End(token, args, result, now, failed: false);
                    }
                }
                if (state.Activity is { } activity)
                {
                    state.Activity = null;
                    if (activity.IsAllDataRequested) SpanTags.TagEnd(activity, result);
                    activity.Stop();
                }
            }

            public override void Failed(CallFrame frame, List<Exception> suppressed)
            {
                if (Unsafe.As<State>(frame.State(Instance.Slot)) is not { } state) return;
                long now = Stopwatch.GetTimestamp();
                var tracers = state.Tracers;
                for (int i = 0; i < tracers.Length; i++)
                {
                    long token = state.TracerTokens[i];
                    if (token < 0) continue;
                    state.TracerTokens[i] = -1;
                    try { tracers[i].End(token, (object?)null, now, failed: true); }
                    catch (Exception e) { suppressed.Add(e); }
                }
                var observers = state.Observers;
                for (int i = 0; i < observers.Length; i++)
                {
                    if (state.Tokens[i] is not { } token) continue;
                    state.Tokens[i] = null;
                    try { observers[i].End(token, null, null, now, failed: true); }
                    catch (Exception e) { suppressed.Add(e); }
                }
                if (state.Activity is { } activity)
                {
                    state.Activity = null;
                    try
                    {
                        activity.SetStatus(ActivityStatusCode.Error, "The module call threw.");
                        activity.Stop();
                    }
                    catch (Exception e) { suppressed.Add(e); }
                }
            }
        }
    }
}
