using TorchSharp;

namespace TorchHooks
{
    /// <summary>
    /// Autocast's step on the call path: the kept weight casts (<see cref="CastCache"/>) open their gate for the
    /// duration of the outermost facade call when it runs inside an autocast region, and close it when the call
    /// ends. It has no steps on module calls (it is never active for a module): it acts only at the outermost
    /// facade call's begin and end (<see cref="CallConcern.OuterCallBegins"/>).
    /// </summary>
    internal sealed class WeightCastConcern : CallConcern
    {
        public static readonly WeightCastConcern Instance = new();

        public override bool IsActiveFor(HookPoint node) => false;

        public override CallSteps<TArgs, TResult> Steps<TArgs, TResult>() => new None<TArgs, TResult>();

        /// <summary>Inside an autocast region: records the model's parameters and opens the gate (kept mode); see <see cref="CastCache.FacadeBegin"/>.</summary>
        public override bool OuterCallBegins(torch.nn.Module root) => AutocastStack.Depth != 0 && CastCache.FacadeBegin(root);

        public override void OuterCallEnds() => CastCache.FacadeEnd();

        private sealed class None<TArgs, TResult> : CallSteps<TArgs, TResult> { }
    }
}
