public enum _PlaceholderDecisionLog {}
