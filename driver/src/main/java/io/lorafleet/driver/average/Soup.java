package io.lorafleet.driver.average;

import io.lorafleet.worker.lora.AdapterFormat;
import io.lorafleet.worker.model.BaseModel;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * Model soups over LoRA adapters (Wortsman et al. 2022, "Model soups", arXiv 2203.05482), on their
 * dense updates. The uniform soup averages every ingredient's ΔW = s·B·A; the greedy soup (the
 * paper's recipe 1) sorts the ingredients by their held-out metric, best first, starts from the
 * best, and adds each next one only if the average with it does not score worse on held-out data.
 * A soup is written as a PEFT adapter refactored to a rank by an exact truncated SVD of each
 * module's averaged update ({@link AdapterAverager}'s svd mode).
 */
public final class Soup {
  private Soup() {}

  /** An adapter that may go into the soup: its name, the adapter and its own held-out metric. */
  public record Ingredient(String name, AdapterFormat.Loaded adapter, double metric) {}

  /** Scores adapters written to disk on the held-out data: one metric value each, in order. */
  @FunctionalInterface
  public interface Scorer {
    double score(Path adapter) throws IOException;
  }

  /**
   * What the greedy recipe made: its ingredients (names, in the order they were added), its metric,
   * the soup itself, and each tried addition (the ingredient and the metric of the soup with it).
   */
  public record Greedy(List<String> ingredients, double metric, AdapterAverager.Result soup, List<Tried> tried) {}

  /** One ingredient the greedy recipe tried to add: the metric of the soup with it, and whether it stayed. */
  public record Tried(String name, double metric, boolean kept) {}

  /** The uniform average of {@code ingredients}' dense updates, refactored to {@code rank}. */
  public static AdapterAverager.Result uniform(BaseModel base, List<Ingredient> ingredients, int rank) {
    List<AdapterAverager.Source> src = new ArrayList<>();
    for (Ingredient i : ingredients) {
      src.add(new AdapterAverager.Source(i.name(), i.adapter()));
    }
    double[] w = new double[src.size()];
    java.util.Arrays.fill(w, 1.0);
    return AdapterAverager.combine(base, src, w, true, "svd", rank);
  }

  /**
   * The greedy soup: ingredients sorted by their metric ({@code greaterIsBetter} says which way is
   * better; a tie keeps the given order), each candidate soup written under {@code work} and scored
   * by {@code scorer}. An addition stays when the soup's metric with it is at least as good as without.
   */
  public static Greedy greedy(BaseModel base, List<Ingredient> ingredients, boolean greaterIsBetter, int rank, Path work, Scorer scorer)
      throws IOException {
    List<Ingredient> sorted = new ArrayList<>(ingredients);
    Comparator<Ingredient> byMetric = Comparator.comparingDouble(Ingredient::metric);
    sorted.sort(greaterIsBetter ? byMetric.reversed() : byMetric);
    List<Ingredient> soup = new ArrayList<>(List.of(sorted.get(0)));
    double best = sorted.get(0).metric();
    AdapterAverager.Result made = uniform(base, soup, rank);
    List<Tried> tried = new ArrayList<>();
    for (Ingredient next : sorted.subList(1, sorted.size())) {
      List<Ingredient> with = new ArrayList<>(soup);
      with.add(next);
      AdapterAverager.Result candidate = uniform(base, with, rank);
      Path dir = work.resolve("greedy-try-" + tried.size());
      AdapterFormat.write(dir, candidate.model(), candidate.values(), candidate.metadata());
      double m = scorer.score(dir);
      boolean keep = greaterIsBetter ? m >= best : m <= best;
      tried.add(new Tried(next.name(), m, keep));
      if (keep) {
        soup = with;
        best = m;
        made = candidate;
      }
    }
    return new Greedy(soup.stream().map(Ingredient::name).toList(), best, made, tried);
  }
}
